"""The docs site in a real headless browser: Debian chromium loads pages served from 127.0.0.1."""
import functools, http.server, re, shutil, subprocess, sys, threading
from pathlib import Path
import pytest

root = Path(__file__).resolve().parent.parent
site = root/'_docs'
chromium = shutil.which('chromium') or shutil.which('chromium-browser')
flags = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-quic', '--hide-scrollbars']

@pytest.fixture(scope='module')
def served_site():
    "Serve the built site (building it when missing) on an ephemeral port of 127.0.0.1."
    if not (site/'index.html').exists(): subprocess.run([sys.executable, str(root/'tools'/'docs.py')], check=True, cwd=root)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    handler = functools.partial(Quiet, directory=str(site))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}'
    srv.shutdown()

def browse(url, tmp_path, *args):
    "Run headless chromium on `url` with a fresh profile; return its stdout."
    if chromium is None: pytest.fail('chromium is not installed: run `bash tools/install.sh` (apt-get install chromium)')
    cmd = [chromium, *flags, f'--user-data-dir={tmp_path/"profile"}', *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90).stdout

def text_of(dom): return re.sub(r'\s+', ' ', re.sub(r'<[^>]+>', ' ', dom))

def test_home_page_renders(served_site, tmp_path):
    dom = browse(served_site + '/index.html', tmp_path, '--virtual-time-budget=3000', '--dump-dom')
    assert '<title>' in dom and 'llmkd' in re.search(r'<title>(.*?)</title>', dom, re.S).group(1)
    assert 'Put a large language model' in text_of(dom)
    shot = tmp_path/'home.png'
    browse(served_site + '/index.html', tmp_path, '--window-size=1280,1600', f'--screenshot={shot}')
    assert shot.exists() and shot.stat().st_size > 10_000
    print(f'screenshot: {shot}')

def test_api_page_shows_symbol_and_signature(served_site, tmp_path):
    dom = browse(served_site + '/callback.attribution.html', tmp_path, '--virtual-time-budget=3000', '--dump-dom')
    text = text_of(dom)
    assert 'AttributionRegularizer' in text
    assert re.search(r'AttributionRegularizer\s*\(\s*prior', text), 'the signature of AttributionRegularizer is not shown'
