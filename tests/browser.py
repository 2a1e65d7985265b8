"""Headless Chromium for the HTML tests: run it offline, ask it what it made of each <img>, screenshot a page."""
import html, json, re, shutil, subprocess
import numpy as np

CHROMIUM = next((p for p in map(shutil.which, ('chromium', 'chromium-browser', 'google-chrome')) if p), None)
NO_CHROMIUM = "chromium not found; install it with `apt-get install -y chromium`"

def chromium(*args, user_dir, timeout=120):
    "Run headless chromium with the flags that keep it offline and quiet; returns the CompletedProcess."
    flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
             '--disable-component-update', '--disable-sync', f'--user-data-dir={user_dir}']
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=timeout)

# runs at the page's load event and writes what the browser made of every <img> into the DOM
_PROBE = """<script>
window.addEventListener('load', function () {
  var out = [];
  document.querySelectorAll('img').forEach(function (im) {
    var r = im.getBoundingClientRect(), cs = getComputedStyle(im);
    out.push({complete: im.complete, naturalWidth: im.naturalWidth, naturalHeight: im.naturalHeight,
              width: r.width, height: r.height, left: r.left, docWidth: document.documentElement.scrollWidth,
              visible: cs.display !== 'none' && cs.visibility !== 'hidden' && parseFloat(cs.opacity) > 0});
  });
  var pre = document.createElement('pre'); pre.id = 'rdarts-probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""

def browser_images(html_path, tmp):
    "What headless chromium reports for each <img> of the page (decoded size, rendered size, visibility)."
    page = tmp/f"probe_{html_path.stem}.html"
    page.write_text(html_path.read_text().replace('</body>', _PROBE + '</body>'))
    r = chromium('--virtual-time-budget=10000', '--dump-dom', page.as_uri(), user_dir=tmp/'chrome-profile')
    m = re.search(r'<pre id="rdarts-probe">(.*?)</pre>', r.stdout, re.S)
    assert m, f"chromium did not run the probe (rc {r.returncode}): {r.stderr[-800:]}"
    return json.loads(html.unescape(m.group(1)))

def screenshot_stats(html_path, tmp, size=(1280, 2400)):
    "Screenshot the top of the page; returns (std of grey values, fraction of non-white pixels)."
    from PIL import Image
    shot = tmp/f"shot_{html_path.stem}.png"
    r = chromium('--hide-scrollbars', f'--window-size={size[0]},{size[1]}', f'--screenshot={shot}', '--virtual-time-budget=10000',
                 html_path.as_uri(), user_dir=tmp/'chrome-profile')
    assert shot.exists(), f"no screenshot (rc {r.returncode}): {r.stderr[-800:]}"
    a = np.asarray(Image.open(shot).convert('L'), dtype=float)
    assert a.shape == (size[1], size[0])
    return float(a.std()), float((a < 245).mean())
