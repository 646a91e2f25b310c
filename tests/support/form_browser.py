"""A stand-in for the system browser (`BROWSER="python form_browser.py %s"`): opens the
sandbox's HelseID login page, submits the form of one test person (BKM_TEST_PERSON, a
fødselsnummer; default the seed's fastlege; "cancel" presses Avbryt) and follows the redirect
back to the bridge's loopback address, as a person clicking would. Plain HTTP, no script."""

from __future__ import annotations

import html
import os
import re
import sys

import httpx

SEED_LEGE = "15837510047"


def main(url: str) -> None:
    person = os.environ.get("BKM_TEST_PERSON", SEED_LEGE)
    origin = re.match(r"https?://[^/]+", url)
    assert origin is not None
    with httpx.Client(follow_redirects=False, timeout=10) as http:
        page = http.get(url).text
        forms = re.findall(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', page, re.S)
        for action, inner in forms:
            fields = {
                k: html.unescape(v) for k, v in re.findall(r'name="(\w+)" value="([^"]*)"', inner)
            }
            if (person == "cancel" and "cancel" in fields) or fields.get("pid") == person:
                answer = http.post(origin.group(0) + html.unescape(action), data=fields)
                back = http.get(answer.headers["location"])
                print(back.status_code, file=sys.stderr)
                return
    raise SystemExit(f"no login form for {person} on {url}")


if __name__ == "__main__":
    main(sys.argv[1])
