"""Theme options Jupyter Book cannot set (a local Sphinx extension).

Jupyter Book builds ``html_theme_options`` from ``_config.yml`` (repository
and launch buttons), and a ``html_theme_options`` under ``sphinx: config:``
would replace that dictionary instead of adding to it, so the two options
below are added here, once the configuration is read:

* ``navbar_persistent = []``: one search field per page. sphinx-book-theme
  puts the search field in the left sidebar and leaves the top bar
  (pydata-sphinx-theme's header) empty by setting ``navbar_persistent`` to
  nothing in its theme.conf. pydata-sphinx-theme 0.17 no longer sees that
  value: when the user's ``html_theme_options`` lack ``navbar_persistent``,
  it sets it to ``["search-button-field"]``, and every page gets a top bar
  that holds nothing but a second search field.
* ``shorten_urls = False``: links are shown as written. The theme would
  show a GitHub link as ``owner/repo``, and a bibliography entry would read
  "URL: numenta/htmpapers" instead of the address.

tests/book checks both in the built pages. It also adds
``book/_static/output-wrap.css``: a cell output's long line scrolls
sideways inside its box (unwrapped, so printed tables keep their columns)
instead of running past the edge, where the reader could not see its end.
"""

from __future__ import annotations


def _theme_options(app, config):
    options = dict(config.html_theme_options or {})
    options.setdefault("navbar_persistent", [])
    options.setdefault("shorten_urls", False)
    config.html_theme_options = options


def setup(app):
    app.connect("config-inited", _theme_options)
    app.add_css_file("output-wrap.css")
    return {"version": "1.0", "parallel_read_safe": True,
            "parallel_write_safe": True}
