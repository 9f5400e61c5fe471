"""The docs site in a real headless browser: Debian chromium loads pages served over HTTP from 127.0.0.1.

Every API page, the home page and the tutorials are checked the same way; a failing page reports all of its
offenders in one message. Screenshots go to _site/screenshots/ (or $LLMKD_SCREENSHOTS).
"""
import functools, html, http.server, importlib, inspect, os, re, shutil, subprocess, sys, threading, tomllib
from collections import Counter
from pathlib import Path
import pytest

root = Path(__file__).resolve().parent.parent
site = root/'_docs'
shots = Path(os.environ.get('LLMKD_SCREENSHOTS') or root/'_site'/'screenshots')
chromium = shutil.which('chromium') or shutil.which('chromium-browser')
flags = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-quic', '--hide-scrollbars']
EVENTS = {'before_fit', 'before_epoch', 'before_train', 'before_batch', 'after_pred', 'after_loss', 'before_backward',
          'after_backward', 'before_step', 'after_step', 'after_cancel_batch', 'after_batch', 'after_cancel_train',
          'after_train', 'before_validate', 'after_cancel_validate', 'after_validate', 'after_cancel_epoch', 'after_epoch',
          'after_cancel_fit', 'after_fit'}

def page_of(nb:Path) -> str:
    "The page a notebook renders to: its name without the number prefix (07a_elad.data.ipynb -> elad.data.html)."
    return re.sub(r'^\d+[a-z]?_', '', nb.stem) + '.html'

def api_pages() -> dict:
    "Page -> module, for every notebook in nbs/ that exports a module."
    out = {}
    for nb in sorted((root/'nbs').glob('*.ipynb')):
        m = re.search(r'#\|\s*default_exp\s+([\w.]+)', nb.read_text())
        if m: out[page_of(nb)] = 'llmkd.' + m.group(1).removesuffix('.__init__')
    return out

def public_names(modname:str) -> list:
    "The functions and classes a module defines and exports (`__all__`); re-exported names are documented elsewhere."
    mod = importlib.import_module(modname)
    return [n for n in getattr(mod, '__all__', []) if (inspect.isfunction(o := getattr(mod, n, None)) or inspect.isclass(o))
            and getattr(o, '__module__', None) == modname]

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

def rendered(served_site, page, tmp_path) -> str:
    "The DOM of `page` after its scripts ran (KaTeX included), and a screenshot of it in `shots`."
    dom = browse(f'{served_site}/{page}', tmp_path, '--virtual-time-budget=5000', '--dump-dom')
    shot = shots/(page.replace('/', '__').removesuffix('.html') + '.png')
    shot.parent.mkdir(parents=True, exist_ok=True)
    browse(f'{served_site}/{page}', tmp_path, '--window-size=1280,1800', '--virtual-time-budget=5000', f'--screenshot={shot}')
    assert shot.exists() and shot.stat().st_size > 10_000, f'{page}: no screenshot, or a blank one ({shot})'
    return dom

def text_of(dom): return html.unescape(re.sub(r'\s+', ' ', re.sub(r'<[^>]+>', ' ', dom)))

def main_text(dom):
    "Page text without scripts, styles and code (code may legitimately hold `\\(` or a path)."
    dom = re.sub(r'<(script|style|pre|code)\b.*?</\1>', ' ', dom, flags=re.S)
    return text_of(dom)

def doc_entries(dom) -> list:
    "(name, block) of every show_doc entry: a rule, then a heading, in a markdown cell output."
    hs = list(re.finditer(r'<hr\s*/?>\s*(?:<p>(?:(?!</p>).)*source</a></p>\s*)?<h([2-4])\b[^>]*>(.*?)</h\1>', dom, flags=re.S))
    ends = [m.start() for m in hs[1:]] + [len(dom)]
    return [(text_of(m.group(2)).strip(), dom[m.end():min(e, m.end() + 20_000)].split('<div id="cell-')[0]) for m, e in zip(hs, ends)]

PROGRESS = re.compile(r'\d{1,3}(?:\.\d+)?% ?\|?\s*\[\d+/\d+|[█▉▊▋▌▍▎▏]{3,}|━{5,}|\d+(?:\.\d+)?it/s|\|#{3,}')

def page_problems(dom:str, names=()) -> list[str]:
    "Everything wrong with one rendered page."
    bad, text, body = [], text_of(dom), main_text(dom)
    if not re.search(r'<main\b|id="quarto-content"', dom): bad.append('the page did not render (no main content)')
    entries = doc_entries(dom)
    counts = Counter(n for n, _ in entries)
    for n in names:
        if counts[n] != 1: bad.append(f'`{n}` documented {counts[n]} times (want once)')
    bad += [f'entry `{n}` shown {k} times' for n, k in counts.items() if k > 1 and n not in names]
    for n, block in entries:
        if n.rsplit('.', 1)[-1] in EVENTS and '<p' not in block: bad.append(f'callback event `{n}` shown without a docstring')
    def found(what, hits):
        "One line for all distinct hits of one kind."
        hits = list(dict.fromkeys(hits))
        if hits: bad.append(f'{what} ({len(hits)}): ' + ' | '.join(hits))
    found('`__main__.` in signatures', re.findall(r'__main__\.\w+', text))
    found('private `_from_` names', re.findall(r'(?<![\w])_from_\w+', text))
    found('`NoneType` in signatures (annotate the parameter)', [f'{n}:NoneType' for n in re.findall(r'(\w+)\s*:\s*NoneType', text)] + re.findall(r'\w+\[[^\]]*NoneType\]', text))
    found('text progress bars', [m.group(0) for m in PROGRESS.finditer(body)])
    if '<progress' in dom: bad.append('a saved progress bar widget')
    found('machine paths', re.findall(r'/(?:work|home|root|tmp)/\S+|\S*site-packages\S*', body))
    found('saved stderr outputs (warnings? filter them in the notebook and say why)',
          [text_of(m)[:90].strip() for m in re.findall(r'class="cell-output cell-output-stderr">(.*?)</div>', dom, flags=re.S)])
    has_math = 'katex.min.js' in dom or 'class="katex' in dom
    if re.search(r'\\\[|\\\(', body): bad.append('raw TeX (\\[ or \\() in the page text' + ('' if has_math else ' and no KaTeX loaded'))
    if has_math and 'class="katex' not in dom: bad.append('KaTeX is loaded but rendered no math')
    if re.search(r'<(?:script|link)\b[^>]*(?:src|href)="https?://cdn', dom): bad.append('loads files from a CDN')
    return bad

API = api_pages()

@pytest.mark.parametrize('page', sorted(API))
def test_api_page(served_site, tmp_path, page):
    "Each documented public name appears once; no raw TeX, private names, progress bars, paths or warnings."
    try: names, bad = public_names(API[page]), []
    except Exception as e: names, bad = [], [f'{API[page]} does not import: {type(e).__name__}: {e}']
    bad += page_problems(rendered(served_site, page, tmp_path), names)
    assert not bad, f'{page} ({API[page]}, {len(names)} public names): {len(bad)} problem(s):\n  ' + '\n  '.join(bad)

TUTORIALS = sorted(p.relative_to(root/'nbs').with_suffix('.html').as_posix() for p in (root/'nbs'/'tutorials').glob('*.ipynb'))

@pytest.mark.parametrize('page', TUTORIALS + ['architecture.html', 'changelog.html'])
def test_other_page(served_site, tmp_path, page):
    "Tutorials and the other pages: rendered, no raw TeX, progress bars, private names, paths or warnings."
    bad = page_problems(rendered(served_site, page, tmp_path))
    assert not bad, f'{page}: {len(bad)} problem(s):\n  ' + '\n  '.join(bad)

def test_home_page(served_site, tmp_path):
    "Home page: title, the package version in the navbar, links to the architecture page and the changelog."
    dom = rendered(served_site, 'index.html', tmp_path)
    bad = page_problems(dom)
    title = re.search(r'<title>(.*?)</title>', dom, re.S)
    if not title or 'llmkd' not in title.group(1): bad.append('no llmkd in the title')
    version = tomllib.loads((root/'pyproject.toml').read_text())['project']['version']
    if f'v{version}' not in text_of(dom): bad.append(f'the package version v{version} is not shown')
    for href in ('architecture.html', 'changelog.html'):
        if f'href="{href}"' not in dom: bad.append(f'no link to {href}')
    assert not bad, 'index.html: ' + '\n  '.join(bad)

def test_math_is_rendered_offline(served_site, tmp_path):
    "A page with math: KaTeX comes from the site itself and turns every `\\(`/`\\[` into rendered math."
    dom = rendered(served_site, 'elad.selection.html', tmp_path)
    assert 'src="site_libs/katex/katex.min.js"' in dom, 'KaTeX is not served from the site'
    assert len(re.findall(r'class="katex"', dom)) >= 3, 'fewer than 3 rendered formulas'
    assert not re.search(r'\\\[|\\\(', main_text(dom)), 'raw TeX left in the page text'

def test_name_links_resolve(served_site, tmp_path):
    "Backticked names link to their API entry on this site, and the entry is there."
    dom = rendered(served_site, 'elad.html', tmp_path)
    links = re.findall(r'<a href="([\w.]+\.html)#([\w.-]+)"><code>([\w.]+)</code></a>', dom)
    assert links, 'no backticked name links to an API entry'
    for page, anchor, name in links:
        target = (site/page).read_text()
        assert f'id="{anchor}"' in target, f'{name}: {page}#{anchor} has no such anchor'

def test_page_checks_catch_offenders():
    "The checks find what they look for (a page made of known offenders) and pass a clean page."
    bad_page = ('<main><div class="cell-output cell-output-display cell-output-markdown"><hr><p><a href="x">source</a></p><h3 id="a">Foo.before_batch</h3></div>'
                '<div id="cell-2"><p>x: __main__.Usage and ProbaTeacher._from_sklearn</p>'
                '<div class="cell-output cell-output-stderr"><pre>w</pre></div><p>\\[L = 1\\]</p>'
                '<p> 45.00% [9/20 00:01&lt;00:02]</p></div></main>')
    bad = page_problems(bad_page, names=['Foo', 'Bar'])
    for want in ['`Foo` documented 0 times', 'callback event `Foo.before_batch`', '`__main__.`', '`_from_`',
                 'stderr', 'raw TeX', 'progress bar']:
        assert any(want in b for b in bad), (want, bad)
    clean = '<main><div class="cell-output cell-output-display cell-output-markdown"><hr><h3 id="foo">Foo</h3><p><em>doc</em></p></div></main>'
    assert page_problems(clean, names=['Foo']) == []

def test_localize_and_link_check(tmp_path):
    "tools/docs.py: KaTeX copied into the site and referenced relatively, published-site links made local, bad anchors caught."
    sys.path.insert(0, str(root/'tools'))
    import docs
    katex = tmp_path/'katex'
    for f in ['katex.min.css', 'katex.min.js', 'contrib/auto-render.min.js', 'fonts/KaTeX_Main-Regular.woff2']:
        (katex/f).parent.mkdir(parents=True, exist_ok=True); (katex/f).write_text('x')
    s = tmp_path/'site'; (s/'sub').mkdir(parents=True)
    (s/'a.html').write_text('<h3 id="foo">foo</h3>')
    (s/'sub'/'b.html').write_text('<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/katex@0.16.11/dist/katex.min.css">'
                                  '<a href="https://x.io/p/a.html#foo"><code>foo</code></a><a href="https://x.io/p/a.html#nope">x</a>')
    names = docs.localize(s, 'https://x.io/p/', katex)
    b = (s/'sub'/'b.html').read_text()
    assert 'href="../site_libs/katex/katex.min.css"' in b and 'cdn.jsdelivr' not in b
    assert 'href="../a.html#foo"' in b and len(names) == 2
    assert (s/'site_libs/katex/fonts/KaTeX_Main-Regular.woff2').exists() and (s/'site_libs/katex/contrib/auto-render.min.js').exists()
    assert docs.broken_links(s, 'https://x.io/p/') == ['sub/b.html: ../a.html#nope (no such anchor)']
    assert docs.cdn_refs(s) == []
    q = tmp_path/'_quarto.yml'; q.write_text('      - text: "v0.0.0"  # package version: kept by tools/docs.py\n')
    docs.sync_version(q, '1.2.3'); assert '"v1.2.3"' in q.read_text()
