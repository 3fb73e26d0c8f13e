"""MkDocs hook (``hooks:`` in mkdocs.yml): the repository's Markdown files and their relative links,
as GitHub shows them, in the documentation site.

- ``README.md`` is the site's home page and ``model/README.md`` (the model card, which ships with the
  model) its model card page, each read where it is (``PAGES``).
- A relative link is followed from the file it is written in, as on GitHub, and pointed at the page
  or file of the site that holds its target: ``docs/performance.md`` from the README, ``../docs/experiments.md``
  from the model card.
- A linked repository file outside ``docs/`` (``../configs/shipped.yaml``, the model card's
  ``metrics.json``) is published with the site under ``repository/`` and linked there.
- A link whose target does not exist is left as written, so that ``mkdocs build --strict`` fails on it.
"""

import os
import posixpath
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

# Repository Markdown files outside docs/ that are pages of the site: repository path -> site path.
PAGES = {"README.md": "index.md", "model/README.md": "model-card.md"}
# Where linked repository files outside docs/ are published in the site.
PUBLISHED = "repository"
# The target of a Markdown inline link or image: `](target` up to a space or `)`.
LINK = re.compile(r"(?<=\]\()[^)\s]+")


def _root(config: MkDocsConfig) -> Path:
    """The repository's root: the folder of mkdocs.yml."""
    return Path(config.config_file_path).parent


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add ``PAGES`` to the site's files."""
    for source, page in PAGES.items():
        files.append(File.generated(config, page, abs_src_path=str(_root(config) / source)))
    return files


def _site_path(target: Path, config: MkDocsConfig, files: Files) -> str | None:
    """The site path (``src_uri``) of the repository file ``target``, publishing it when it lies outside
    ``docs/``; ``None`` for a file that does not exist or lies outside the repository."""
    root, docs = _root(config), Path(config.docs_dir)
    if target.is_relative_to(docs):
        return target.relative_to(docs).as_posix()
    if not target.is_relative_to(root) or not target.is_file():
        return None
    source = target.relative_to(root).as_posix()
    if source in PAGES:
        return PAGES[source]
    published = f"{PUBLISHED}/{source}"
    if published not in files:
        files.append(File.generated(config, published, abs_src_path=str(target)))
    return published


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Point the page's relative links at the site's copies of their targets (see the module docstring)."""
    assert page.file.abs_src_path is not None  # every page of this site is a file
    folder = Path(page.file.abs_src_path).parent

    def relink(match: re.Match[str]) -> str:
        url = match[0]
        path, _, fragment = url.partition("#")
        if not path or urlsplit(url).scheme or url.startswith("/"):
            return url
        site = _site_path(Path(os.path.normpath(folder / unquote(path))), config, files)
        if site is None:
            return url
        link = posixpath.relpath(site, posixpath.dirname(page.file.src_uri) or ".")
        return link + (f"#{fragment}" if fragment else "")

    return LINK.sub(relink, markdown)
