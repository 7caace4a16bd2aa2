#!/usr/bin/env node
/*
 * Drives a real browser (Debian's chromium, through playwright-core) over
 * kaproxy's admin page for tests/integration/47-page-browser.py, one command
 * per stdin line, one answer line per command ("OK key=value ..." or
 * "FAIL why"), like tests/integration/peer.py.  Every wait is bounded by the
 * command's timeout in seconds.  Values in answers have spaces as '_'.
 *
 *   open URL                         launch chromium, load the page, wait for its first poll
 *   row ID T                         the live connection ID has a row
 *   leg ID SIDE STATE PROBES T       SIDE's leg of ID is ok|dying|dead with at least PROBES
 *                                    probes shown; answers probes= and countdown=
 *   gone ID T                        ID's row has left the live table
 *   closed ID T                      ID is in the closed table; answers reason= teardown= detect=
 *   shot PATH                        a screenshot of the whole page
 *   errors                           OK n=0, or FAIL with every console error, page error,
 *                                    failed request and HTTP error status seen so far
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

function word(s) {
	return String(s).replace(/\s+/g, "_");
}

function answer(line) {
	process.stdout.write(line + "\n");
}

async function open(url, timeout) {
	if (!fs.existsSync(executable))
		throw new Error("no browser at " + executable + " (apt-get install chromium)");
	browser = await chromium.launch({
		executablePath: executable,
		headless: true,
		/* as root in a network namespace: no user namespaces for the sandbox */
		args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"],
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
	await page.goto(url, { timeout: timeout });
	await page.waitForFunction(() => /^updated /.test(document.getElementById("status").textContent),
	    null, { timeout: timeout });
	return "OK title=" + word(await page.title());
}

async function run(parts) {
	const cmd = parts[0], ms = (s) => Math.round(Number(s) * 1000);
	let h;

	switch (cmd) {
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
