# bench/report.awk: turns run.sh's raw results into the table on stdout and
# the JSON file named by -v out=FILE.
#
# Inputs: status.tsv (target TAB status), then results.tsv
# (target TAB label TAB rep TAB loadgen's name=value line). A figure is the
# median over its repetitions; CPU per GB is total CPU over total bytes of
# all bulk runs of that target. Plain POSIX awk (mawk on Debian).

function kv(line, arr,    n, key, val) {
	# name=value pairs; a value may be "quoted" and hold spaces
	split("", arr)
	while (match(line, /[a-z0-9_]+=/)) {
		key = substr(line, RSTART, RLENGTH - 1)
		line = substr(line, RSTART + RLENGTH)
		if (substr(line, 1, 1) == "\"") {
			line = substr(line, 2)
			n = index(line, "\"")
			if (n == 0) n = length(line) + 1
			val = substr(line, 1, n - 1)
			line = substr(line, n + 1)
		} else {
			n = index(line, " ")
			if (n == 0) n = length(line) + 1
			val = substr(line, 1, n - 1)
			line = substr(line, n)
		}
		arr[key] = val
	}
}

function add(t, m, v) {
	if (v == "") return
	cnt[t, m]++
	val[t, m, cnt[t, m]] = v + 0
}

function median(t, m,    n, i, j, x, a) {
	n = cnt[t, m]
	if (n == 0) return ""
	for (i = 1; i <= n; i++) a[i] = val[t, m, i]
	for (i = 2; i <= n; i++) {
		x = a[i]
		for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]
		a[j + 1] = x
	}
	if (n % 2) return a[(n + 1) / 2]
	return (a[n / 2] + a[n / 2 + 1]) / 2
}

function note(t, s) {
	notes[t] = notes[t] (notes[t] == "" ? "" : "\n") s
}

function jstr(s) {
	gsub(/\\/, "\\\\", s)
	gsub(/"/, "\\\"", s)
	gsub(/\t/, " ", s)
	gsub(/\n/, "\\n", s)
	return "\"" s "\""
}

function jnum(v) { return v == "" ? "null" : sprintf("%.6g", v) }

function ratio(a, b) { return (a == "" || b == "" || b + 0 == 0) ? "" : a / b }

function cell(v, fmt, w) {
	return sprintf("%" w "s", v == "" ? "-" : sprintf(fmt, v))
}

BEGIN {
	ntargets = split(targets, T, " ")
	nm = split("bulk1_gbps bulk8_gbps p50_us p99_us p50_1cpu_us conn_per_s idle_kib_per_conn cpu_s_per_gb", M, " ")
	split("%.2f %.2f %.1f %.1f %.1f %.0f %.2f %.3f", F, " ")
	split("bulk1 bulk8 p50 p99 p50 conn/s idle cpu", H1, " ")
	split("Gbit/s Gbit/s us us 1cpu,us conc8 KiB/conn s/GB", H2, " ")
	extras = "p99_1cpu_us p999_us idle_rss_kib_per_conn idle_pss_kib_per_conn connrate_errors idle_opened"
}

FNR == NR { status[$1] = $2; next }

{
	t = $1; label = $2
	kv($4, r)
	if ("error" in r) note(t, label " run " $3 ": " r["error"])
	if (label == "bulk1" || label == "bulk8") {
		add(t, label "_gbps", r["gbps"])
		if (r["failed"] == 1) note(t, label " run " $3 ": send failed")
		if (r["cpu_s"] != "") { cpu[t] += r["cpu_s"]; cpubytes[t] += r["bytes"] }
	} else if (label == "pingpong") {
		add(t, "p50_us", r["p50_us"]); add(t, "p99_us", r["p99_us"])
		add(t, "p999_us", r["p999_us"])
	} else if (label == "pingpong1") {
		add(t, "p50_1cpu_us", r["p50_us"]); add(t, "p99_1cpu_us", r["p99_us"])
		if (r["pinned"] + 0 < 2) note(t, "pingpong1 run " $3 ": pinning failed")
	} else if (label == "connrate") {
		add(t, "conn_per_s", r["conn_per_s"])
		add(t, "connrate_errors", r["errors"])
		if (r["errors"] + 0 > 0)
			note(t, "connrate run " $3 ": " r["errors"] " failed connections (" r["last_error"] ")")
	} else if (label == "idle") {
		# A forking proxy's children share most pages: RSS summed over them
		# would count libc once per connection, so PSS stands in there.
		add(t, "idle_kib_per_conn", r["procs1"] + 0 > 1 ? r["pss_kib_per_conn"] : r["rss_kib_per_conn"])
		add(t, "idle_rss_kib_per_conn", r["rss_kib_per_conn"])
		add(t, "idle_pss_kib_per_conn", r["pss_kib_per_conn"])
		add(t, "idle_opened", r["opened"])
		if (r["opened"] != r["wanted"])
			note(t, "idle: opened " r["opened"] " of " r["wanted"] (r["stopped"] != "" ? " (" r["stopped"] ")" : ""))
		if (r["procs1"] + 0 > 1)
			note(t, "idle: one process per connection; figure is the PSS delta summed over " r["procs1"] " processes (RSS sum: " r["rss_kib_per_conn"] " KiB/conn)")
	}
}

END {
	for (i = 1; i <= ntargets; i++) {
		t = T[i]
		for (j = 1; j <= nm; j++) fig[t, M[j]] = median(t, M[j])
		fig[t, "cpu_s_per_gb"] = cpubytes[t] > 0 ? cpu[t] / (cpubytes[t] / 1e9) : ""
		n = split(extras, X, " ")
		for (j = 1; j <= n; j++) fig[t, X[j]] = median(t, X[j])
	}

	# ---- table ----
	printf "\nkaproxy bench %s  commit %s  %s  kernel %s, %d CPUs\n", date, commit, quick ? "QUICK (smoke test, figures not meaningful)" : "full", kernel, cpus
	printf "loopback; median of %d run(s); bulk %ss, ping-pong %ss (64 B), conn/s %ss (conc 8, 64 B each way), idle %d conns;\n", reps, bulk_secs, pp_secs, cr_secs, idle_n
	printf "proxy threads %d; keepalive idle/intvl/cnt %s on both legs; idle = proxy RSS delta per connection;\n", threads, ka
	printf "p50/p99 unpinned (which hops wake another CPU is up to the scheduler: bimodal on small VMs);\n"
	printf "p50 1cpu = client, proxy and upstream pinned to CPU 0 (software path cost alone)\n\n"
	line = sprintf("%-16s", "target")
	for (j = 1; j <= nm; j++) line = line sprintf("%9s", H1[j])
	print line
	line = sprintf("%-16s", "")
	for (j = 1; j <= nm; j++) line = line sprintf("%9s", H2[j])
	print line
	for (i = 1; i <= ntargets; i++) {
		t = T[i]
		line = sprintf("%-16s", t)
		if (status[t] != "ok" && cnt[t, "bulk1_gbps"] + cnt[t, "idle_kib_per_conn"] == 0) {
			print line "  (" status[t] ")"
			continue
		}
		for (j = 1; j <= nm; j++) line = line cell(fig[t, M[j]], F[j], 9)
		print line
	}
	for (k = 1; k <= 2; k++) {
		ref = k == 1 ? "direct" : "haproxy"
		printf "ratio to %s\n", k == 1 ? "direct" : "haproxy (no splice)"
		for (i = 1; i <= ntargets; i++) {
			t = T[i]
			if (t == "direct" || t == ref) continue
			if (cnt[t, "bulk1_gbps"] + cnt[t, "idle_kib_per_conn"] == 0) continue
			line = sprintf("  %-14s", t)
			for (j = 1; j <= nm; j++) {
				rt = ratio(fig[t, M[j]], fig[ref, M[j]])
				rat[ref, t, M[j]] = rt
				line = line cell(rt, "%.2fx", 9)
			}
			print line
		}
	}

	# ---- kaproxy's goals ----
	ng = split("bulk1_gbps bulk8_gbps p50_us p50_1cpu_us conn_per_s idle_kib_per_conn", G, " ")
	split(">= 0.7x direct|>= 0.7x direct|<= 1.6x direct|<= 1.6x direct|>= 0.8x direct|<= 1 KiB/conn", GT, "|")
	split("0.7 0.7 1.6 1.6 0.8 1", GL, " ")
	printf "\nkaproxy goals:\n"
	for (j = 1; j <= ng; j++) {
		m = G[j]
		v = m == "idle_kib_per_conn" ? fig["kaproxy", m] : ratio(fig["kaproxy", m], fig["direct", m])
		if (v == "") { met[j] = ""; printf "  %-18s n/a\n", m; continue }
		met[j] = (m ~ /^p50/ || m == "idle_kib_per_conn") ? (v <= GL[j]) : (v >= GL[j])
		gv[j] = v
		printf "  %-18s %6s  goal %-15s %s\n", m, sprintf(m == "idle_kib_per_conn" ? "%.2f" : "%.2fx", v), GT[j], met[j] ? "ok" : "MISS"
	}
	hasnotes = 0
	for (i = 1; i <= ntargets; i++) {
		t = T[i]
		if (notes[t] == "" && status[t] == "ok") continue
		if (!hasnotes++) print "notes:"
		if (status[t] != "ok") printf "  %s: %s\n", t, status[t]
		n = split(notes[t], NL, "\n")
		for (j = 1; j <= n; j++) printf "  %s: %s\n", t, NL[j]
	}

	# ---- JSON ----
	printf "{\n" > out
	printf "  \"meta\": {\"date\": %s, \"commit\": %s, \"quick\": %s, \"kernel\": %s, \"cpus\": %d,\n", jstr(date), jstr(commit), (quick ? "true" : "false"), jstr(kernel), cpus > out
	printf "    \"repetitions\": %d, \"bulk_secs\": %s, \"pingpong_secs\": %s, \"connrate_secs\": %s, \"connrate_concurrency\": 8,\n", reps, bulk_secs, pp_secs, cr_secs > out
	printf "    \"message_bytes\": 64, \"idle_connections\": %d, \"proxy_threads\": %d, \"keepalive_idle_intvl_cnt\": %s},\n", idle_n, threads, jstr(ka) > out
	printf "  \"units\": {\"bulk1_gbps\": \"Gbit/s\", \"bulk8_gbps\": \"Gbit/s\", \"p50_us\": \"us\", \"p99_us\": \"us\", \"p999_us\": \"us\", \"conn_per_s\": \"1/s\", \"idle_kib_per_conn\": \"KiB (RSS)\", \"idle_pss_kib_per_conn\": \"KiB (PSS)\", \"cpu_s_per_gb\": \"CPU s per 1e9 bytes\"},\n" > out
	printf "  \"targets\": {\n" > out
	for (i = 1; i <= ntargets; i++) {
		t = T[i]
		printf "    %s: {\"status\": %s,\n      \"figures\": {", jstr(t), jstr(status[t]) > out
		sep = ""
		for (j = 1; j <= nm; j++) { printf "%s%s: %s", sep, jstr(M[j]), jnum(fig[t, M[j]]) > out; sep = ", " }
		n = split(extras, X, " ")
		for (j = 1; j <= n; j++) printf ", %s: %s", jstr(X[j]), jnum(fig[t, X[j]]) > out
		printf "},\n" > out
		for (k = 1; k <= 2; k++) {
			ref = k == 1 ? "direct" : "haproxy"
			printf "      \"ratio_to_%s\": {", ref > out
			sep = ""
			for (j = 1; j <= nm; j++) {
				printf "%s%s: %s", sep, jstr(M[j]), jnum(ratio(fig[t, M[j]], fig[ref, M[j]])) > out
				sep = ", "
			}
			printf "},\n" > out
		}
		printf "      \"notes\": [" > out
		n = split(notes[t], NL, "\n")
		for (j = 1; j <= n; j++) printf "%s%s", (j > 1 ? ", " : ""), jstr(NL[j]) > out
		printf "]}%s\n", (i < ntargets ? "," : "") > out
	}
	printf "  },\n  \"kaproxy_goals\": [\n" > out
	for (j = 1; j <= ng; j++)
		printf "    {\"figure\": %s, \"value\": %s, \"goal\": %s, \"met\": %s}%s\n", jstr(G[j]), jnum(gv[j]), jstr(GT[j]), (met[j] == "" ? "null" : (met[j] ? "true" : "false")), (j < ng ? "," : "") > out
	printf "  ]\n}\n" > out
	close(out)
}
