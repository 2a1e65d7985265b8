"""The README's TensorBoard picture: a real local TensorBoard over a run folder, screenshotted by headless Chromium.

    python tests/tensorboard_screenshot.py runs/demo reports/img/tensorboard_demo.png

Not a pytest file (test_tensorboard.py checks what TensorBoard serves). `forceSVG`: headless Chromium has no WebGL,
with which TensorBoard's time series would draw no lines."""
import socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from browser import chromium

def main(logdir, out, tags='valid_error|train_error|discrete_valid_error|curvature/eig_max|skip/normal'):
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, '-m', 'tensorboard.main', '--logdir', str(logdir), '--port', str(port),
                          '--host', '127.0.0.1'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(60):
            try: urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=2).read(); break
            except OSError: time.sleep(1)
        url = f"http://127.0.0.1:{port}/?forceSVG=true&smoothing=0&tagFilter={urllib.request.quote(tags, safe='')}#timeseries"
        with tempfile.TemporaryDirectory() as d:
            r = chromium('--window-size=1500,1000', '--virtual-time-budget=30000', f'--screenshot={Path(out).resolve()}', url,
                         user_dir=Path(d)/'chrome', timeout=180)
        if not Path(out).exists(): sys.exit(r.stderr[-1000:])
        print(out)
    finally: p.terminate(); p.wait(timeout=30)

if __name__ == '__main__': main(*sys.argv[1:])
