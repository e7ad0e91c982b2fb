"""A tiny "browser" over httpx2 (the HTTP client the MCP SDK itself uses): a cookie
jar for the server's origin, redirects never followed automatically, and the
server's HTML forms parsed with the standard library. Enough to drive the
sign-up, login and consent pages the way a person's browser would."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx2


class CheckFailed(AssertionError):
    """An expectation about the server's behaviour did not hold."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class Form:
    method: str
    action: str
    inputs: dict[str, str] = field(default_factory=dict)  # every named <input>, in document order
    hidden: dict[str, str] = field(default_factory=dict)  # the type="hidden" ones
    buttons: list[dict[str, str]] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._current: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "form":
            self._current = Form(method=a.get("method", "get").lower(), action=a.get("action", ""))
            self.forms.append(self._current)
        elif self._current is not None and tag == "input" and a.get("name"):
            self._current.inputs[a["name"]] = a.get("value", "")
            if a.get("type", "").lower() == "hidden":
                self._current.hidden[a["name"]] = a.get("value", "")
        elif self._current is not None and tag == "button":
            self._current.buttons.append(a)

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def extract_form(html: str, action: str) -> Form:
    """The `<form action="<action>">` of the page (attribute values HTML-unescaped)."""
    parser = _FormParser()
    parser.feed(html)
    for form in parser.forms:
        if form.action == action:
            return form
    seen = ", ".join(f"{f.method} {f.action}" for f in parser.forms) or "none"
    raise CheckFailed(f'no <form action="{action}"> in page (forms seen: {seen}):\n{html}')


@dataclass
class Page:
    status: int
    location: str | None  # absolute
    text: str
    headers: httpx2.Headers


class Browser:
    """A user agent against one origin: cookies kept, redirects never followed."""

    def __init__(self, origin: str) -> None:
        self.origin = origin.rstrip("/")
        self.cookies: dict[str, str] = {}
        self._http = httpx2.AsyncClient(follow_redirects=False, timeout=30.0)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _same_origin(self, url: str) -> bool:
        a, b = urlsplit(url), urlsplit(self.origin)
        return (a.scheme, a.netloc) == (b.scheme, b.netloc)

    def _remember(self, response: httpx2.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            pair, *attrs = header.split(";")
            name, eq, value = pair.partition("=")
            if not eq:
                continue
            expired = any(
                a.strip().lower().startswith("max-age=") and a.split("=", 1)[1].strip().lstrip("-").isdigit()
                and int(a.split("=", 1)[1]) <= 0
                for a in attrs
            )
            if expired:
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value.strip()

    async def request(self, method: str, url: str, form: dict[str, str] | None = None) -> Page:
        target = urljoin(self.origin + "/", url)
        headers = {"Accept": "text/html"}
        # Cookies go only to our server, never to the client's redirect URI.
        if self.cookies and self._same_origin(target):
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = await self._http.request(method, target, headers=headers, data=form)
        self._remember(response)
        location = response.headers.get("location")
        return Page(
            status=response.status_code,
            location=urljoin(target, location) if location is not None else None,
            text=response.text,
            headers=response.headers,
        )

    async def get(self, url: str) -> Page:
        return await self.request("GET", url)

    async def post(self, url: str, form: dict[str, str]) -> Page:
        return await self.request("POST", url, form)


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def sign_up(issuer: str, email: str, password: str) -> None:
    """Creates an account through the sign-up page."""
    browser = Browser(issuer)
    try:
        page = await browser.get("/signup")
        check(page.status == 200, f"GET /signup: {page.status} {page.text}")
        check(browser.cookies.get("bk_session"), "GET /signup sets the bk_session cookie")
        form = extract_form(page.text, "/signup")
        check(form.method == "post", f"sign-up form method: {form.method}")
        check(form.hidden.get("csrf_token"), "sign-up form carries a csrf_token")
        check("next" in form.hidden, "sign-up form carries next")
        check("email" in form.inputs and "password" in form.inputs, "sign-up form has email and password fields")
        res = await browser.post(
            "/signup",
            {"csrf_token": form.hidden["csrf_token"], "next": form.hidden["next"], "email": email, "password": password},
        )
        check(res.status == 303, f"POST /signup should be a 303; got {res.status}: {res.text}")
    finally:
        await browser.aclose()


@dataclass
class AuthorizeOutcome:
    callback_url: str  # where the consent page sent the browser (the client's redirect URI + query)
    logged_in: bool  # whether the login page had to be filled in
    consent_scopes: list[str]  # the scope hidden input of the consent form, split


async def authorize_in_browser(
    browser: Browser,
    authorization_url: str,
    *,
    issuer: str,
    email: str,
    password: str,
    redirect_uri: str,
    decision: str = "approve",
) -> AuthorizeOutcome:
    """Plays the user agent from the authorization URL to the 303 back to the client:
    authorize → (login → authorize →) consent → redirect URI. Signs in only when the
    server asks for it (a browser that signed in before goes straight to consent)."""
    logged_in = False
    first = await browser.get(authorization_url)
    check(first.status == 303, f"GET authorize should be a 303; got {first.status}: {first.text}")
    assert first.location is not None
    to = urlsplit(first.location)

    if f"{to.scheme}://{to.netloc}{to.path}" == f"{issuer}/login":
        # Signed out: the login page, then back to the authorization request.
        login_page = await browser.get(first.location)
        check(login_page.status == 200, f"GET /login: {login_page.status} {login_page.text}")
        form = extract_form(login_page.text, "/login")
        check(form.method == "post", f"login form method: {form.method}")
        check(form.hidden.get("csrf_token"), "login form carries a csrf_token")
        nxt = form.hidden.get("next")
        check(nxt == path_and_query(authorization_url), f"login next= is the authorize request: {nxt!r}")
        check("email" in form.inputs and "password" in form.inputs, "login form has email and password fields")
        res = await browser.post(
            "/login", {"csrf_token": form.hidden["csrf_token"], "next": nxt, "email": email, "password": password}
        )
        check(res.status == 303, f"POST /login should be a 303; got {res.status}: {res.text}")
        check(res.location == urljoin(issuer + "/", nxt), f"login redirects to next: {res.location}")
        logged_in = True
        second = await browser.get(res.location)
        check(second.status == 303, f"GET authorize (signed in) should be a 303; got {second.status}: {second.text}")
        assert second.location is not None
        to_consent = second.location
    else:
        to_consent = first.location

    c = urlsplit(to_consent)
    check(
        f"{c.scheme}://{c.netloc}{c.path}" == f"{issuer}/consent",
        f"signed-in authorize without remembered consent goes to /consent; got {to_consent}",
    )
    consent_page = await browser.get(to_consent)
    check(consent_page.status == 200, f"GET /consent: {consent_page.status} {consent_page.text}")
    consent = extract_form(consent_page.text, "/consent")
    check(consent.method == "post", f"consent form method: {consent.method}")
    check(consent.hidden.get("csrf_token"), "consent form carries a csrf_token")
    decisions = sorted(b.get("value", "") for b in consent.buttons if b.get("name") == "decision")
    check(decisions == ["approve", "deny"], f"consent form has approve and deny buttons: {decisions}")
    fields = dict(consent.hidden)
    fields["decision"] = decision
    decided = await browser.post("/consent", fields)
    check(decided.status == 303, f"POST /consent should be a 303; got {decided.status}: {decided.text}")
    assert decided.location is not None
    cb = urlsplit(decided.location)
    check(
        f"{cb.scheme}://{cb.netloc}{cb.path}" == redirect_uri,
        f"consent redirects to the registered redirect URI: {decided.location}",
    )
    return AuthorizeOutcome(decided.location, logged_in, consent.hidden.get("scope", "").split())
