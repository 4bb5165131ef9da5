"""The forms' HTML: the hosted page, its messages, and the embeddable form.

Templates autoescape everything: labels are an admin's text, values a visitor's, and
either may hold markup that must show as text and never run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from patron.crm.forms import definitions as d
from patron.crm.forms.submissions import FormView

PAGE_NAMES = (*d.UTM, d.PAGE_URL, d.REFERRER, d.ANONYMOUS)

templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals.update(page_names=PAGE_NAMES, honeypot=d.HONEYPOT, utm_names=list(d.UTM))


def render(template: str, **context: Any) -> str:
    return templates.get_template(template).render(**context)


def embed_html(form: FormView, *, base_url: str) -> str:
    """A plain ``<form>`` posting to the public URL, with a small script that fills the
    page's campaign, URL, referrer and the snippet's anonymous id into hidden inputs."""
    return render("embed.html", form=form, action=f"{base_url.rstrip('/')}/f/{form.slug}")
