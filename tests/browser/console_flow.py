#!/usr/bin/env python3
"""console_flow.py: the web console driven in headless Chromium (Debian's) by
Playwright, against a running kcqrs stack (tests/e2e/console.bats starts it).

The flow of issue 17: a wrong key is refused next to the field; sign in; the
status page shows the brokers; create a resource and find it in the list;
edit it with a stale version and see the conflict, reload and save; create a
workflow pointing at a local receiver (its secret shown once), trigger it
with a payload and watch the run succeed; search the audit log for the
resource and export the result as NDJSON and CSV, and see every partition's
hash chain intact; delete the resource (If-Match) and see it gone; the read
models page with the last replay runs;
sign out, after which neither the key nor the webhook secret is anywhere in
the page or its session storage. On every page: a screenshot at 1280x800
(and the resources page at 390x800 too), axe-core (from npm, evaluated in
the page) with no serious or critical violation, and no console error
(a Content-Security-Policy refusal included).

Environment: CONSOLE_URL (the query API's /console), KEY_ADMIN, KEY_WRITER,
COMMANDS_URL, RECEIVER_URL, AXE_JS (path of axe.min.js), CHROMIUM (the
browser binary), ARTIFACTS (screenshots and exports go there).
Exit status 0 when every step passed; each step prints "ok N name".
"""
import json
import os
import re
import sys
import time
import urllib.request

from playwright.sync_api import expect, sync_playwright

ENV = {k: os.environ[k] for k in ("CONSOLE_URL", "KEY_ADMIN", "KEY_WRITER", "COMMANDS_URL",
                                  "RECEIVER_URL", "AXE_JS", "CHROMIUM", "ARTIFACTS")}
TIMEOUT_MS = 20000
AXE = open(ENV["AXE_JS"], encoding="utf-8").read()
STEP = [0]
T0 = [time.monotonic()]


def step(name):
    """One step passed: its number, name and seconds (the file's time budget is ~90 s)."""
    STEP[0] += 1
    now = time.monotonic()
    print(f"ok {STEP[0]} {name} ({now - T0[0]:.1f} s)", flush=True)
    T0[0] = now


def api(method, path, body=None, if_match=None):
    """One command straight to kcqrs-commands (the other writer of the stale-edit test)."""
    req = urllib.request.Request(ENV["COMMANDS_URL"] + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", "Bearer " + ENV["KEY_WRITER"])
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if if_match is not None:
        req.add_header("If-Match", f'"{if_match}"')
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def check_page(page, name, errors):
    """Screenshot, axe-core (no serious or critical violation), no console error."""
    page.screenshot(path=os.path.join(ENV["ARTIFACTS"], f"{name}.png"), full_page=True)
    page.evaluate(AXE + "\n;0")
    res = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
    }""")
    bad = [v for v in res if v["impact"] in ("serious", "critical")]
    with open(os.path.join(ENV["ARTIFACTS"], f"{name}.axe.json"), "w") as f:
        json.dump(res, f, indent=1)
    assert not bad, f"{name}: axe violations: {json.dumps(bad, indent=1)}"
    assert not errors, f"{name}: console errors: {errors}"


def main():
    os.makedirs(ENV["ARTIFACTS"], exist_ok=True)
    with sync_playwright() as p:
        # --no-sandbox: the tests run as root, where Chromium refuses its sandbox
        browser = p.chromium.launch(executable_path=ENV["CHROMIUM"], args=["--no-sandbox"])
        ctx = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        ctx.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        page = ctx.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))

        # --- sign-in: a wrong key is refused next to the field
        page.goto(ENV["CONSOLE_URL"])
        key_input = page.get_by_label("API key")
        expect(key_input).to_be_focused()
        key_input.fill("not-a-key")
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#signin-form .form-error")).to_contain_text("401")
        expect(page.locator("#signin-form .field-error")).to_contain_text("not valid")
        expect(key_input).to_have_attribute("aria-invalid", "true")
        errors.clear()  # the browser logs the refused request itself
        check_page(page, "01-signin-refused", errors)
        step("a wrong key is refused next to its field")

        key_input.fill(ENV["KEY_ADMIN"])
        key_input.press("Enter")
        expect(page.get_by_role("heading", name="Status", level=1)).to_be_visible()
        assert ENV["KEY_ADMIN"] not in page.url
        expect(page.locator("#who-name")).to_contain_text("e2e-admin")
        expect(page.get_by_role("table", name="Brokers")).to_contain_text("up")
        expect(page.get_by_role("table", name="Topics and end offsets")).to_contain_text("resource.events")
        expect(page.locator(".card", has_text="Command writer")).to_contain_text("ready")
        check_page(page, "02-status", errors)
        step("signed in; status shows brokers, topics and the writer")

        # --- resources: create, find in the list
        page.get_by_role("link", name="Resources").click()
        expect(page.get_by_role("heading", name="Resources", level=1)).to_be_visible()
        name = f"console resource {int(time.time() * 1000)}"
        create = page.get_by_role("form", name="Create a resource")
        create.get_by_label("Name").fill("")
        create.get_by_role("button", name="Create").click()
        expect(create.locator(".field-error")).to_be_visible()  # the API's per-field error
        expect(create.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
        errors.clear()
        create.get_by_label("Name").fill(name)
        create.get_by_label("Description").fill("made in a browser")
        create.get_by_role("button", name="Create").click()
        notice = page.locator(".notice", has_text="Created")
        expect(notice).to_be_visible()
        rid = notice.get_by_role("link").inner_text()
        assert re.fullmatch(r"[0-9a-f-]{36}", rid), rid
        lst = page.get_by_role("table", name=re.compile("Resources, page"))
        expect(lst).to_contain_text(name)
        page.get_by_label("Status").last.select_option("active")
        page.get_by_role("button", name="Apply").click()
        expect(lst).to_contain_text(rid)
        check_page(page, "03-resources", errors)
        page.set_viewport_size({"width": 390, "height": 800})
        check_page(page, "03-resources-narrow", errors)
        page.set_viewport_size({"width": 1280, "height": 800})
        step("created a resource and found it in the list")

        # --- edit with a stale version: conflict, reload, save
        lst.get_by_role("link", name=rid).click()
        edit = page.get_by_role("form", name=re.compile(r"Edit \(version 1\)"))
        expect(edit).to_be_visible()
        api("PUT", f"/api/v1/resources/{rid}", {"description": "changed elsewhere"}, if_match=1)
        edit.get_by_label("Name").fill(name + " edited")
        edit.get_by_role("button", name="Save").click()
        alert = edit.get_by_role("alert")
        expect(alert).to_contain_text("412")
        expect(alert).to_contain_text("now at version 2")
        errors.clear()
        check_page(page, "04-resource-conflict", errors)
        alert.get_by_role("button", name="Reload the current version").click()
        edit = page.get_by_role("form", name=re.compile(r"Edit \(version 2\)"))
        expect(edit.get_by_label("Description")).to_have_value("changed elsewhere")
        edit.get_by_label("Name").fill(name + " edited")
        edit.get_by_role("button", name="Save").click()
        expect(page.get_by_role("form", name=re.compile(r"Edit \(version 3\)"))).to_be_visible()
        expect(page.locator('[data-prop="name"]')).to_have_text(name + " edited")
        hist = page.get_by_role("table", name="Events, oldest first")
        expect(hist).to_contain_text("ResourceCreated")
        expect(hist.locator("tbody tr")).to_have_count(3)
        check_page(page, "05-resource-detail", errors)
        step("a stale edit shows the conflict; reload and save gives version 3")

        # --- workflows: per-field errors, create (secret shown once), switches, trigger, run
        page.get_by_role("link", name="Workflows").click()
        create = page.get_by_role("form", name="Create a workflow")
        create.get_by_label("Name").fill(f"console wf {int(time.time() * 1000)}")
        actions = create.get_by_label("Actions (JSON array)")
        actions.fill('[{"type": "http", "url": "ftp://nowhere.example/x"}]')
        create.get_by_role("button", name="Create workflow").click()
        expect(create.locator('[data-field="actions"] .field-error')).to_contain_text("actions[0].url")
        expect(actions).to_have_attribute("aria-invalid", "true")
        actions.fill("[not json")
        create.get_by_role("button", name="Create workflow").click()
        expect(create.locator('[data-field="actions"] .field-error')).to_contain_text("not valid JSON")
        errors.clear()
        check_page(page, "06-workflow-errors", errors)
        actions.fill(json.dumps([{"type": "http", "name": "receiver", "method": "POST",
                                  "url": ENV["RECEIVER_URL"] + "/console-hook",
                                  "body_template": "{{payload.service}}"}]))
        create.get_by_role("button", name="Create workflow").click()
        secret = page.locator(".notice .secret")
        expect(secret).to_be_visible()
        secret1 = secret.inner_text()
        assert len(secret1) >= 16, secret1
        wf_link = page.locator(".notice", has_text="Created workflow").get_by_role("link")
        wid = wf_link.inner_text()
        expect(page.get_by_role("table", name=re.compile("Workflows, page"))).to_contain_text(wid)
        check_page(page, "07-workflows", errors)
        page.get_by_role("button", name="I have copied it").click()
        expect(page.locator(".secret")).to_have_count(0)
        wf_link.click()
        expect(page.get_by_role("heading", name=f"Workflow {wid}")).to_be_visible()
        page.get_by_role("button", name="Disable").click()
        expect(page.locator('[data-prop="enabled"]')).to_have_text("no")
        expect(page.get_by_role("button", name="Trigger run")).to_be_disabled()
        page.get_by_role("button", name="Enable").click()
        expect(page.locator('[data-prop="enabled"]')).to_have_text("yes")
        page.get_by_role("button", name="Rotate webhook secret").click()
        expect(page.locator('[data-prop="version"]')).to_have_text("4")
        secret2 = page.locator(".notice .secret").inner_text()
        assert secret2 and secret2 != secret1
        check_page(page, "08-workflow-detail", errors)
        step("workflow: field errors, created (secret once), disabled, enabled, secret rotated")

        page.get_by_label("Payload (JSON object)").fill('{"service": "console-e2e"}')
        page.get_by_role("button", name="Trigger run").click()
        expect(page.get_by_role("heading", name=re.compile("^Run "))).to_be_visible()
        expect(page.locator("#run-status")).to_contain_text("succeeded", timeout=60000)
        timeline = page.get_by_role("table", name=re.compile(r"Step 0 receiver \(http\): succeeded"))
        expect(timeline).to_contain_text("HTTP 200")
        expect(page.locator("pre").first).to_contain_text("console-e2e")
        check_page(page, "09-run", errors)
        page.get_by_role("link", name="← All runs").click()
        page.get_by_label("Workflow id").fill(wid)
        page.get_by_label("Status").select_option("succeeded")
        page.get_by_role("button", name="Apply").click()
        expect(page.get_by_role("table", name=re.compile("Runs, page")).locator("tbody tr")).to_have_count(1)
        check_page(page, "10-runs", errors)
        step("triggered a run and watched it succeed; found it by workflow and status")

        # --- audit: search for the resource, export NDJSON and CSV
        page.get_by_role("link", name="Audit").click()
        page.get_by_label("Aggregate id").fill(rid)
        page.get_by_role("button", name="Search").click()
        res = page.get_by_role("table", name=re.compile("Audit events"))
        expect(res.locator("tbody tr")).to_have_count(3)
        expect(res).to_contain_text("ResourceCreated")
        expect(res).to_contain_text("e2e-writer")
        check_page(page, "11-audit", errors)
        with page.expect_download() as dl:
            page.get_by_role("button", name="Export NDJSON").click()
        path = os.path.join(ENV["ARTIFACTS"], "audit.ndjson")
        dl.value.save_as(path)
        rows = [json.loads(line) for line in open(path)]
        assert [r["version"] for r in rows] == [1, 2, 3], rows
        assert all(r["aggregate_id"] == rid for r in rows)
        with page.expect_download() as dl:
            page.get_by_role("button", name="Export CSV").click()
        path = os.path.join(ENV["ARTIFACTS"], "audit.csv")
        dl.value.save_as(path)
        lines = open(path).read().splitlines()
        assert lines[0].startswith("occurred_at,actor,aggregate_type,aggregate_id,version,event_type")
        assert len(lines) == 4 and all(rid in x for x in lines[1:]), lines
        page.get_by_label("Since").fill("yesterday")
        page.get_by_role("button", name="Search").click()
        expect(page.locator('[data-field="since"] .field-error')).to_be_visible()
        errors.clear()
        step("audit: found the resource's 3 events; NDJSON and CSV exports hold them")

        # the hash chain of every partition, checked by the query API
        chain = page.get_by_role("table", name="Hash chain per partition")
        expect(chain).to_contain_text("resource.events")
        expect(page.locator("#chain-summary")).to_contain_text("Every partition intact")
        expect(chain.locator('[data-state="broken"]')).to_have_count(0)
        rows = chain.locator("tbody tr")
        assert rows.count() >= 3, rows.count()
        check_page(page, "11-audit-chain", errors)
        step("audit: the hash chain of every partition is intact")

        # --- delete the resource (If-Match) and see it gone
        page.get_by_role("link", name="Resources").click()
        expect(page.get_by_role("table", name=re.compile("Resources, page"))).to_contain_text(rid)
        page.goto(ENV["CONSOLE_URL"] + f"#/resources/{rid}")
        delete = page.get_by_role("form", name="Delete")
        delete.get_by_role("button", name="Delete").click()
        expect(delete.locator('[data-field="confirm"] .field-error')).to_be_visible()
        errors.clear()
        delete.get_by_label("Yes, delete version 3").check()
        delete.get_by_role("button", name="Delete").click()
        expect(page.get_by_role("heading", name="Resources", level=1)).to_be_visible()
        lst = page.get_by_role("table", name=re.compile("Resources, page"))
        expect(lst).to_be_visible()
        expect(lst).not_to_contain_text(rid)
        page.goto(ENV["CONSOLE_URL"] + f"#/resources/{rid}")
        expect(page.get_by_role("alert")).to_contain_text("404")
        errors.clear()  # the browser logs the 404 itself
        step("deleted the resource with If-Match; it is gone from the list and its page is a 404")

        page.get_by_role("link", name="Read models").click()
        expect(page.get_by_role("table", name="lmdb positions")).to_contain_text("resource.events")
        expect(page.get_by_role("table", name="Snapshots")).to_contain_text("console_snap")
        runs = page.get_by_role("table", name="Replay runs")
        expect(runs).to_contain_text("snapshot console_snap")
        expect(runs.locator('[data-outcome="succeeded"]')).to_have_count(3)
        expect(runs.locator('[data-outcome="failed"]')).to_have_count(1)
        expect(runs.locator("tbody tr").first).to_contain_text("busy")
        check_page(page, "12-readmodels", errors)
        step("read models: positions, lag, the snapshot and the last replay runs")

        # --- sign out: nothing secret left
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_label("API key")).to_be_visible()
        html = page.content()
        storage = page.evaluate("JSON.stringify(Object.assign({}, sessionStorage))")
        for secret in (ENV["KEY_ADMIN"], secret1, secret2):
            assert secret not in html and secret not in storage, "a secret is left after sign-out"
        assert storage == "{}", storage
        expect(page.get_by_role("link", name="Resources")).to_be_hidden()
        check_page(page, "99-signed-out", errors)
        step("signed out: no key in the page or session storage")
        browser.close()
    print(f"all {STEP[0]} steps passed")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line that names the failed step, then the trace
        print(f"not ok {STEP[0] + 1}: {e}", file=sys.stderr)
        raise
