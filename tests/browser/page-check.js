#!/usr/bin/env node
/*
 * Drives a real browser (Debian's chromium, through playwright-core) over
 * kaproxy's admin page for tests/integration/49-page-browser.py, and over
 * pages of other origins (tests/browser/attack.html) for
 * 50-admin-browser-origin.py, one command per stdin line, one answer line per
 * command ("OK key=value ..." or "FAIL why"), like tests/integration/peer.py.
 * Every wait is bounded by the command's timeout in seconds.  Values in
 * answers have spaces as '_', except bodies and JSON, which are
 * percent-encoded (encodeURIComponent).
 *
 *   launch T [RULES...]              launch chromium; RULES (the rest of the line) become
 *                                    its --host-resolver-rules ("MAP evil.test 127.0.0.2")
 *   open URL T                       launch chromium unless launched, load the admin page,
 *                                    wait for its first poll
 *   row ID T                         the live connection ID has a row
 *   leg ID SIDE STATE PROBES T       SIDE's leg of ID is ok|dying|dead with at least PROBES
 *                                    probes shown; answers probes= and countdown=
 *   gone ID T                        ID's row has left the live table
 *   closed ID T                      ID is in the closed table; answers reason= teardown= detect=
 *   shot PATH                        a screenshot of the whole page
 *   errors                           OK n=0, or FAIL with every console error, page error,
 *                                    failed request and HTTP error status seen so far
 *   goto URL T                       load URL whatever its status; answers status= body=
 *   result T                         the outcome attack.html leaves in window.attack: json=
 *   fetch METHOD URL T               fetch(URL) from the page now loaded, as its own script
 *                                    would; answers status= body=
 *   fetched PATH N T                 once the browser has received at least N responses to
 *                                    the page's fetch() calls for URL path PATH, whatever it
 *                                    let the page see, answers their statuses=, the
 *                                    Access-Control-Allow-Origin received acao= and why CORS
 *                                    withheld it cors= ("-": none), and forgets them
 *   quit
 *
 * The browser: $KAPROXY_CHROMIUM, else /usr/bin/chromium.  Its absence is a
 * FAIL, never a skip.
 */
"use strict";

const fs = require("fs");
const readline = require("readline");
const { chromium } = require("playwright-core");

const executable = process.env.KAPROXY_CHROMIUM || "/usr/bin/chromium";
let browser = null, page = null;
const problems = [];
/* What `fetched` reports, and who waits for the next of it. */
let fetched = [], arrived = null;

function word(s) {
	return String(s).replace(/\s+/g, "_");
}

function answer(line) {
	process.stdout.write(line + "\n");
}

function body(text, max) {
	return encodeURIComponent(text.slice(0, max));
}

async function launch(timeout, rules) {
	/* as root in a network namespace: no user namespaces for the sandbox */
	const args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"];

	if (!fs.existsSync(executable))
		throw new Error("no browser at " + executable + " (apt-get install chromium)");
	if (rules)
		args.push("--host-resolver-rules=" + rules);
	browser = await chromium.launch({
		executablePath: executable,
		headless: true,
		args: args,
		timeout: timeout,
	});
	page = await browser.newPage({ viewport: { width: 1500, height: 900 } });
	page.on("console", (msg) => {
		if (msg.type() === "error" || msg.type() === "warning")
			problems.push("console " + msg.type() + ": " + msg.text());
	});
	page.on("pageerror", (err) => problems.push("page error: " + err.message));
	page.on("requestfailed", (req) =>
	    problems.push("request failed: " + req.url() + " " + (req.failure() || {}).errorText));
	page.on("response", (res) => {
		if (res.status() >= 400)
			problems.push("HTTP " + res.status() + " for " + res.url());
	});
	await watchFetches();
}

/*
 * What the browser received for each fetch() of the page, including what
 * CORS then withholds from it (playwright's "response" event never sees
 * that one), from the page's own DevTools session.  The events of one
 * request come in any order: it is recorded once it has ended and its
 * response head is known.
 */
async function watchFetches() {
	const cdp = await page.context().newCDPSession(page);
	const requests = new Map();
	const of = (id) => requests.get(id) || requests.set(id, {}).get(id);
	const settle = (id) => {
		const r = requests.get(id);

		if (r.url === undefined || r.head === undefined || r.cors === undefined)
			return;
		requests.delete(id);
		if (r.type !== "Fetch")
			return;
		fetched.push({ path: new URL(r.url).pathname, status: r.head.statusCode,
		    acao: header(r.head.headers, "access-control-allow-origin"), cors: r.cors });
		if (arrived)
			arrived();
	};

	cdp.on("Network.requestWillBeSent", (ev) => {
		Object.assign(of(ev.requestId), { url: ev.request.url, type: ev.type });
		settle(ev.requestId);
	});
	cdp.on("Network.responseReceivedExtraInfo", (ev) => {
		of(ev.requestId).head = ev;
		settle(ev.requestId);
	});
	cdp.on("Network.loadingFinished", (ev) => {
		of(ev.requestId).cors = "-";
		settle(ev.requestId);
	});
	cdp.on("Network.loadingFailed", (ev) => {
		of(ev.requestId).cors = ev.corsErrorStatus ? ev.corsErrorStatus.corsError : "-";
		settle(ev.requestId);
	});
	await cdp.send("Network.enable");
}

function header(headers, name) {
	const key = Object.keys(headers).find((k) => k.toLowerCase() === name);

	return key === undefined ? "-" : headers[key];
}

async function open(url, timeout) {
	if (!browser)
		await launch(timeout);
	await page.goto(url, { timeout: timeout });
	await page.waitForFunction(() => /^updated /.test(document.getElementById("status").textContent),
	    null, { timeout: timeout });
	return "OK title=" + word(await page.title());
}

async function fetchedFor(path, n, timeout) {
	const deadline = Date.now() + timeout;
	let got;

	while ((got = fetched.filter((r) => r.path === path)).length < n) {
		const left = deadline - Date.now();
		if (left <= 0)
			return "FAIL " + got.length + "_of_" + n + "_fetches_of_" + path + "_answered";
		await new Promise((resolve) => {
			arrived = resolve;
			setTimeout(resolve, left);
		});
	}
	fetched = fetched.filter((r) => r.path !== path);
	return "OK statuses=" + got.map((r) => r.status).join(",") +
	    " acao=" + got.map((r) => word(r.acao)).join(",") +
	    " cors=" + got.map((r) => word(r.cors)).join(",");
}

async function run(parts) {
	const cmd = parts[0], ms = (s) => Math.round(Number(s) * 1000);
	let h;

	switch (cmd) {
	case "launch":
		await launch(ms(parts[1]), parts.slice(2).join(" "));
		return "OK";
	case "open":
		return open(parts[1], ms(parts[2] || 20));
	case "row":
		await page.waitForSelector('#connections tr[data-id="' + parts[1] + '"]',
		    { timeout: ms(parts[2]) });
		return "OK";
	case "leg": {
		const side = parts[2] === "client" ? 0 : 1, want = parts[3], probes = Number(parts[4]);
		/* Runs in the page (as the debugger, so the page's CSP does not apply). */
		h = await page.waitForFunction(([id, side, want, probes]) => {
			const row = document.querySelector('#connections tr[data-id="' + id + '"]');
			const td = row ? row.querySelectorAll("td.leg")[side] : null;
			if (!td) return null;
			const figures = td.querySelector(".figures");
			const m = figures ? /probes (\d+)/.exec(figures.textContent) : null;
			const cd = td.querySelector(".countdown");
			const l = { state: td.dataset.state || "", probes: m ? Number(m[1]) : -1,
			    countdown: cd ? cd.textContent : "", row: row.className };
			return l.state === want && l.probes >= probes ? l : null;
		}, [parts[1], side, want, probes], { timeout: ms(parts[5]), polling: 100 });
		const l = await h.jsonValue();
		return "OK state=" + l.state + " probes=" + l.probes + " countdown=" +
		    word(l.countdown || "-") + " row=" + word(l.row || "-");
	}
	case "gone":
		await page.waitForSelector('#connections tr[data-id="' + parts[1] + '"]',
		    { state: "detached", timeout: ms(parts[2]) });
		return "OK";
	case "closed": {
		const sel = '#closed tr[data-id="' + parts[1] + '"]';
		await page.waitForSelector(sel, { timeout: ms(parts[2]) });
		const cells = await page.$$eval(sel + " td", (tds) => tds.map((td) => td.textContent));
		return "OK reason=" + word(cells[6]) + " teardown=" + word(cells[7]) +
		    " detect=" + word(cells[8]);
	}
	case "shot":
		await page.screenshot({ path: parts[1], fullPage: true });
		return "OK path=" + parts[1];
	case "errors":
		return problems.length === 0 ? "OK n=0" : "FAIL " + word(problems.join(" | "));
	case "goto": {
		const res = await page.goto(parts[1], { timeout: ms(parts[2]) });
		return "OK status=" + res.status() + " body=" + body(await res.text(), 300);
	}
	case "result":
		h = await page.waitForFunction(() => window.attack, null,
		    { timeout: ms(parts[1]), polling: 100 });
		return "OK json=" + encodeURIComponent(JSON.stringify(await h.jsonValue()));
	case "fetch": {
		/* Runs in the page's main world: its origin, its CORS rules. */
		const r = await page.evaluate(async ([method, url, timeout]) => {
			const res = await fetch(url, { method: method, cache: "no-store",
			    signal: AbortSignal.timeout(timeout) });
			return { status: res.status, text: await res.text() };
		}, [parts[1], parts[2], ms(parts[3])]);
		return "OK status=" + r.status + " body=" + body(r.text, 8192);
	}
	case "fetched":
		return fetchedFor(parts[1], Number(parts[2]), ms(parts[3]));
	case "quit":
		return "OK";
	default:
		return "FAIL unknown command " + cmd;
	}
}

async function main() {
	const rl = readline.createInterface({ input: process.stdin });

	answer("READY");
	for await (const line of rl) {
		const parts = line.trim().split(/\s+/);
		let reply;
		try {
			reply = await run(parts);
		} catch (err) {
			reply = "FAIL " + word(err.message.split("\n")[0]);
		}
		answer(reply);
		if (parts[0] === "quit")
			break;
	}
	if (browser)
		await browser.close();
	process.exit(0);
}

main().catch((err) => {
	answer("FAIL " + word(err.message));
	process.exit(1);
});
