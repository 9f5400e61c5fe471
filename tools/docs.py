"""Build the docs site offline: nbdev's notebook processing, then smalldocs renders the same _quarto.yml.

Users with Quarto can run `nbdev-docs` instead; both read nbs/_quarto.yml, nbs/nbdev.yml and nbs/sidebar.yml.
The offline site needs nothing from the network: KaTeX (the npm package that tools/install.sh installs) is copied
into the site and referenced by relative URLs, and links to API entries point at the local pages.
Usage: python tools/docs.py [--check]   (the site lands in _docs/; --check fails on links that lead nowhere, on
backticked names whose link does not resolve, and on anything loaded from a CDN)
"""
import ast, os, re, shutil, subprocess, sys, tomllib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse, unquote
from nbdev.config import get_config
from nbdev.quarto import refresh_quarto_yml
from nbdev.serve import proc_nbs
import nbdev.doclinks, nbdev.processors

root = Path(__file__).resolve().parent.parent
KATEX_CDN = re.compile(r'https://cdn\.jsdelivr\.net/npm/katex@[\d.]+/dist')
KATEX_FILES = ['katex.min.css', 'katex.min.js', 'contrib/auto-render.min.js', 'fonts']

_do_eval, skipped = nbdev.processors._do_eval, []
def _do_eval_unflagged(cell):
    "nbdev's rule for the cells to run while rendering docs, but never a cell flagged slow, llm or cuda, nor one mixing imports with code."
    flags = set(get_config().tst_flags.split())
    if flags & set(getattr(cell, 'directives_', {})): return None
    if cell.cell_type == 'code' and cell.source and not cell.directives_.keys() & {'export', 'exports', 'exporti', 'exec_doc'}:
        try: trees = cell.parsed_()
        except Exception: trees = None
        tl = nbdev.processors._tl_contains
        if trees and tl(trees, (ast.Import, ast.ImportFrom)) and tl(trees, (ast.Expr, ast.Assign)):
            skipped.append(cell.source.strip().splitlines()[0][:100]); return None   # nbdev would run the whole cell: examples and tests too
    return _do_eval(cell)
nbdev.processors._do_eval = _do_eval_unflagged

def katex_dir() -> Path:
    "The `dist` folder of the KaTeX npm package: `$LLMKD_KATEX_DIR`, else where tools/install.sh puts it."
    cands = [os.environ.get('LLMKD_KATEX_DIR'), root/'.venv/node_modules/katex/dist', root/'node_modules/katex/dist']
    for c in cands:
        if c and (Path(c)/'katex.min.js').exists(): return Path(c)
    sys.exit('KaTeX not found: run `bash tools/install.sh` (it installs the `katex` npm package into .venv/node_modules)')

def sync_version(quarto_yml:Path, version:str):
    "Show the package version in the navbar: rewrite the `text: vX.Y.Z` entry of `_quarto.yml` when it is stale."
    text = quarto_yml.read_text()
    new = re.sub(r'(text: )"v[^"]*"(\s*# package version)', rf'\g<1>"v{version}"\2', text)
    if new != text: quarto_yml.write_text(new)

def _output_file(nb):
    m = re.search(r'output-file:\s*(\S+)', nb.read_text())
    return m.group(1) if m else None

def name_pages(cache):
    "Rename processed notebooks to their `output-file` (as Quarto does), so nbdev's doc links find them."
    renames = {}
    for nb in sorted(cache.rglob('*.ipynb')):
        out = _output_file(nb)
        if not out or Path(out).stem == nb.stem: continue
        new = nb.with_name(Path(out).stem + '.ipynb')
        nb.rename(new)
        renames[nb.relative_to(cache).as_posix()] = new.relative_to(cache).as_posix()
    for f in [*cache.rglob('*.yml'), *cache.rglob('*.ipynb'), *cache.rglob('*.qmd')]:
        text = orig = f.read_text()
        for old, new in renames.items():
            for o, n in [(old, new), (old[:-6]+'.html', new[:-6]+'.html')]:
                text = re.sub(rf'(?<![\w.-]){re.escape(o)}', n, text)
        if text != orig: f.write_text(text)
    return renames

def localize(site:Path, site_url:str, katex:Path) -> list[str]:
    "Serve KaTeX from the site and make links to the published site relative; returns the name links made local."
    dest = site/'site_libs'/'katex'
    shutil.rmtree(dest, ignore_errors=True)
    for f in KATEX_FILES:
        (dest/f).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (katex/f).is_dir() else shutil.copy)(katex/f, dest/f)
    pat, name_links = re.compile(rf'(href=")({re.escape(site_url)})([^"]*)"'), []
    for p in site.rglob('*.html'):
        up = os.path.relpath(site, p.parent).replace(os.sep, '/')
        up = '' if up == '.' else up + '/'
        text = orig = p.read_text()
        text = KATEX_CDN.sub(f'{up}site_libs/katex', text)
        def rel(m):
            target = m.group(3) or 'index.html'
            name_links.append(f'{p.relative_to(site)}: {target}')
            return f'{m.group(1)}{up}{target}"'
        text = pat.sub(rel, text)
        if text != orig: p.write_text(text)
    return name_links

class _Links(HTMLParser):
    def __init__(self): super().__init__(); self.links, self.ids = [], set()
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        for k in ('href', 'src'):
            if a.get(k): self.links.append(a[k])

def broken_links(site, site_url):
    "Links between pages of `site` (relative, or absolute under `site_url`) whose file or anchor is missing."
    pages, bad = {}, []
    for p in site.rglob('*.html'):
        parser = _Links(); parser.feed(p.read_text(errors='replace')); pages[p.resolve()] = parser
    for p, parser in pages.items():
        for link in parser.links:
            if link.startswith(site_url): link = os.path.relpath(link[len(site_url):].lstrip('/') or 'index.html', p.parent.relative_to(site.resolve()))
            u = urlparse(link)
            if u.scheme or u.netloc or link.startswith(('#', 'mailto:', 'javascript:', 'data:')): continue
            target = (p.parent/unquote(u.path)).resolve() if u.path else p
            if target.is_dir(): target = target/'index.html'
            if not target.exists(): bad.append(f'{p.relative_to(site.resolve())}: {link} (no such page)')
            elif u.fragment and target.suffix == '.html' and u.fragment not in pages[target].ids:
                bad.append(f'{p.relative_to(site.resolve())}: {link} (no such anchor)')
    return bad

def cdn_refs(site) -> list[str]:
    "Pages that load a script or stylesheet from another host (the offline site must not)."
    bad = []
    for p in site.rglob('*.html'):
        for m in re.finditer(r'<(?:script|link)\b[^>]*(?:src|href)="(https?://[^"]+)"', p.read_text(errors='replace')):
            if not m.group(0).startswith('<link') or 'stylesheet' in m.group(0): bad.append(f'{p.relative_to(site)}: {m.group(1)}')
    return bad

def build(check=False):
    cfg = get_config()
    os.chdir(cfg.config_path)
    katex = katex_dir()
    sync_version(cfg.nbs_path/'_quarto.yml', tomllib.loads((cfg.config_path/'pyproject.toml').read_text())['project']['version'])
    refresh_quarto_yml()
    nbdev.doclinks._build_modidx()
    # Only notebooks, qmd and html are processed: without file_re nbdev also regenerates sidebar.yml.
    cache = proc_nbs(cfg.nbs_path, file_re=r'\.(?:ipynb|qmd|html)$')
    name_pages(cache)
    subprocess.run([str(Path(sys.executable).parent/'smalldocs'), 'render', str(cache)], check=True)
    shutil.rmtree(cfg.doc_path, ignore_errors=True)
    shutil.move(str(cache/cfg.doc_path.name), str(cfg.doc_path))
    site_url = cfg.doc_host.rstrip('/') + cfg.doc_baseurl.rstrip('/') + '/'
    names = localize(cfg.doc_path, site_url, katex)
    print(f'site written to {cfg.doc_path}: KaTeX served from site_libs/katex, {len(names)} links to API entries')
    if skipped: print(f'{len(skipped)} cell(s) mixing imports with code were not run while rendering: ' + '; '.join(skipped))
    if check:
        bad = broken_links(cfg.doc_path, site_url)
        if not names: bad.append('no backticked name links to an API entry: is the nbdev entry point of llmkd installed? (pip install -e .)')
        bad += [f'{b} (loaded from a CDN)' for b in cdn_refs(cfg.doc_path)]
        bad += [f'a cell mixes imports with code, so rendering the docs would run it (not run; move its imports to a cell of their own): {s}' for s in skipped]
        if bad: sys.exit('docs check failed:\n' + '\n'.join(bad))
        print(f'no broken links between pages; all {len(names)} name links resolve; nothing loaded from a CDN')

if __name__ == '__main__': build(check='--check' in sys.argv)
