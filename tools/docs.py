"""Build the docs site offline: nbdev's notebook processing, then smalldocs renders the same _quarto.yml.

Users with Quarto can run `nbdev-docs` instead; both read nbs/_quarto.yml, nbs/nbdev.yml and nbs/sidebar.yml.
Usage: python tools/docs.py [--check]   (the site lands in _docs/; --check fails on links that lead nowhere)
"""
import os, re, shutil, subprocess, sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse, unquote
from nbdev.config import get_config
from nbdev.quarto import refresh_quarto_yml
from nbdev.serve import proc_nbs
import nbdev.doclinks, nbdev.processors

_do_eval = nbdev.processors._do_eval
def _do_eval_unflagged(cell):
    "nbdev's rule for the cells to run while rendering docs, but never a cell flagged slow, llm or cuda."
    flags = set(get_config().tst_flags.split())
    return None if flags & set(getattr(cell, 'directives_', {})) else _do_eval(cell)
nbdev.processors._do_eval = _do_eval_unflagged

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

def build(check=False):
    cfg = get_config()
    os.chdir(cfg.config_path)
    refresh_quarto_yml()
    nbdev.doclinks._build_modidx()
    # Only notebooks, qmd and html are processed: without file_re nbdev also regenerates sidebar.yml.
    cache = proc_nbs(cfg.nbs_path, file_re=r'\.(?:ipynb|qmd|html)$')
    name_pages(cache)
    subprocess.run([str(Path(sys.executable).parent/'smalldocs'), 'render', str(cache)], check=True)
    shutil.rmtree(cfg.doc_path, ignore_errors=True)
    shutil.move(str(cache/cfg.doc_path.name), str(cfg.doc_path))
    print(f'site written to {cfg.doc_path}')
    if check:
        bad = broken_links(cfg.doc_path, cfg.doc_host.rstrip('/') + cfg.doc_baseurl.rstrip('/') + '/')
        if bad: sys.exit('broken links:\n' + '\n'.join(bad))
        print('no broken links between pages')

if __name__ == '__main__': build(check='--check' in sys.argv)
