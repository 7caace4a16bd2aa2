#!/usr/bin/env python3
"""Goal: the Kubernetes manifests in packaging/kubernetes/ would run the kaproxy
built here as they say they do, checked without a cluster.

- Every YAML document in packaging/kubernetes/*.yaml parses (python3-yaml) and
  names its apiVersion, kind and metadata.name.
- The kaproxy.ini embedded in the ConfigMap uses only keys this kaproxy has
  (`kaproxy-reference keys`, the option table) and passes `kaproxy -t` when
  written to a file; reload_on_change is on.  As -t stops at the first error,
  a file with unknown keys (already failures) is also checked without them.
- The container runs kaproxy with -c on that file inside a directory mount of
  the ConfigMap (a subPath mount is never updated, so reload_on_change would
  see nothing).
- status_listen's port is a container port, and it is the port of both probes
  (GET /healthz), of the prometheus.io annotations and of the PodMonitor's
  endpoint (/metrics); admin_listen is on loopback (or off) and no container
  port exposes it.
- terminationGracePeriodSeconds exceeds shutdown_timeout plus the preStop
  sleep, so kubelet's SIGKILL never cuts a drain short.
- The container runs as non-root on a read-only root file system, drops every
  capability and adds back NET_BIND_SERVICE only if a listener needs a port
  below 1024, and has resource requests and limits.

Not checked: anything a cluster would do (no cluster runs here).

Usage: kubernetes-check.py BUILD_DIR   (needs kaproxy and kaproxy-reference
built there; no root).  Exit 0 when every check passes, 1 otherwise.
"""
import glob
import ipaddress
import os
import re
import subprocess
import sys
import tempfile

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFESTS = os.path.join(SRC, "packaging", "kubernetes")

failures = []


def fail(message):
    failures.append(message)
    print("FAIL: " + message)


def parse_ini(text):
    """[(section, key, value, line)], as kaproxy reads it: comments start with
    ';' or '#' at the start of a line, or after a space at its end."""
    entries, section = [], None
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.split(r"\s[;#]", raw, maxsplit=1)[0].strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip(), number))
    return entries


def duration_seconds(text):
    """A kaproxy duration (integer seconds, or a number with ms, s, m or h)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text)
    if not match:
        raise ValueError("not a duration: %r" % text)
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    return float(match.group(1)) * scale


def split_endpoint(text):
    """'host:port' or '[v6]:port' -> (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_documents(yaml):
    documents = []
    files = sorted(glob.glob(os.path.join(MANIFESTS, "*.yaml")))
    if not files:
        fail("no *.yaml in %s" % MANIFESTS)
    for path in files:
        name = os.path.relpath(path, SRC)
        try:
            with open(path) as f:
                parsed = list(yaml.safe_load_all(f))
        except yaml.YAMLError as e:
            fail("%s does not parse: %s" % (name, e))
            continue
        for index, doc in enumerate(parsed):
            where = "%s, document %d" % (name, index + 1)
            if not isinstance(doc, dict):
                fail("%s: not a mapping (an empty document?)" % where)
                continue
            for field in ("apiVersion", "kind"):
                if not doc.get(field):
                    fail("%s: no %s" % (where, field))
            if not (doc.get("metadata") or {}).get("name"):
                fail("%s: no metadata.name" % where)
            documents.append((where, doc))
        print("ok: %s parses, %d document(s): %s" % (name, len(parsed), ", ".join(
            str(d.get("kind")) for d in parsed if isinstance(d, dict))))
    return documents


def only(documents, kind):
    found = [(where, doc) for where, doc in documents if doc.get("kind") == kind]
    if len(found) != 1:
        fail("expected one %s, found %d" % (kind, len(found)))
        return None, None
    return found[0]


def container_port(container, port):
    """A probe's or monitor's port (a number or a port name) as a number."""
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def kaproxy_t(build, ini_text, what):
    """Run this build's kaproxy -t on ini_text written to a file."""
    with tempfile.TemporaryDirectory(prefix="kaproxy-k8s.") as tmp:
        path = os.path.join(tmp, "kaproxy.ini")
        with open(path, "w") as f:
            f.write(ini_text)
        checked = subprocess.run([os.path.join(build, "kaproxy"), "-t", "-c", path],
                                 capture_output=True, text=True, timeout=30)
    report = (checked.stdout + checked.stderr).strip().replace(path, "kaproxy.ini")
    if checked.returncode != 0:
        fail("kaproxy -t refuses %s (exit %d): %s" % (what, checked.returncode, report))
    else:
        print("ok: kaproxy -t accepts %s:\n  %s" % (what, report.replace("\n", "\n  ")))


def check_ini(build, ini_text):
    """Check the embedded kaproxy.ini with kaproxy's own option table and -t;
    return its [global] values and listener ports."""
    entries = parse_ini(ini_text)
    known = subprocess.run([os.path.join(build, "kaproxy-reference"), "keys"],
                           capture_output=True, text=True, timeout=30)
    if known.returncode != 0:
        fail("kaproxy-reference keys: exit %d: %s" % (known.returncode, known.stderr.strip()))
    keys = set(known.stdout.split())
    unknown = [line for section, key, _, line in entries if key not in keys]
    for section, key, _, line in entries:
        if key not in keys:
            fail("ConfigMap kaproxy.ini:%d: %s (in [%s]) is not a key of this kaproxy "
                 "(kaproxy-reference keys)" % (line, key, section))

    kaproxy_t(build, ini_text, "the ConfigMap's kaproxy.ini")
    if unknown:
        # -t stops at the first error, so check the rest of the file too: the
        # lines with unknown keys are already failures above.
        lines = ini_text.splitlines(keepends=True)
        rest = "".join("\n" if number in unknown else text
                       for number, text in enumerate(lines, 1))
        kaproxy_t(build, rest, "the ConfigMap's kaproxy.ini without line(s) %s"
                  % ", ".join(map(str, unknown)))

    global_values = {key: value for section, key, value, _ in entries if section == "global"}
    listen_ports = [split_endpoint(value)[1] for _, key, value, _ in entries if key == "listen"]
    return global_values, listen_ports


def main():
    if len(sys.argv) != 2:
        print("usage: kubernetes-check.py BUILD_DIR", file=sys.stderr)
        return 2
    build = os.path.abspath(sys.argv[1])
    try:
        import yaml
    except ImportError:
        print("FAIL: python3-yaml is missing (tools/install-deps.sh installs it)")
        return 1

    documents = load_documents(yaml)
    _, configmap = only(documents, "ConfigMap")
    _, workload = only(documents, "Deployment")
    if configmap is None or workload is None:
        return 1
    ini_name = "kaproxy.ini"
    ini_text = (configmap.get("data") or {}).get(ini_name)
    if not ini_text:
        fail("the ConfigMap has no data key %s" % ini_name)
        return 1
    settings, listen_ports = check_ini(build, ini_text)

    if settings.get("reload_on_change") not in ("on", "yes", "true", "1"):
        fail("reload_on_change is not on in the ConfigMap's kaproxy.ini")

    pod = workload["spec"]["template"]
    spec = pod["spec"]
    containers = spec.get("containers") or []
    if len(containers) != 1:
        fail("expected one container, found %d" % len(containers))
        return 1
    container = containers[0]

    # -c names the ConfigMap's file in a directory mount of it.
    command = (container.get("command") or []) + (container.get("args") or [])
    config_path = command[command.index("-c") + 1] if "-c" in command[:-1] else None
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    mount = None
    for m in container.get("volumeMounts") or []:
        volume = volumes.get(m.get("name")) or {}
        if (volume.get("configMap") or {}).get("name") == configmap["metadata"]["name"]:
            mount = m
    if config_path is None:
        fail("the container's command has no -c FILE")
    elif mount is None:
        fail("no volume mount of the ConfigMap %s" % configmap["metadata"]["name"])
    elif mount.get("subPath"):
        fail("the ConfigMap is mounted with subPath: kubelet never updates such a "
             "file, so reload_on_change would not see a change")
    elif config_path != os.path.join(mount["mountPath"], ini_name):
        fail("-c %s is not %s in the ConfigMap's mount at %s"
             % (config_path, ini_name, mount["mountPath"]))
    else:
        print("ok: -c %s is the ConfigMap's %s, mounted as a directory" % (config_path, ini_name))

    # Probes, annotations and the PodMonitor all use status_listen's port.
    ports = [p.get("containerPort") for p in container.get("ports") or []]
    status = settings.get("status_listen")
    if not status or status == "off":
        fail("status_listen is not set in the ConfigMap's kaproxy.ini")
        status_port = None
    else:
        status_port = split_endpoint(status)[1]
        if status_port not in ports:
            fail("status_listen port %d is not a container port %s" % (status_port, ports))
    for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = container.get(probe_name)
        if probe is None:
            if probe_name != "startupProbe":
                fail("no %s" % probe_name)
            continue
        get = probe.get("httpGet") or {}
        port = container_port(container, get.get("port"))
        if get.get("path") != "/healthz" or port != status_port:
            fail("%s is GET %s on port %s, not /healthz on status_listen's port %s"
                 % (probe_name, get.get("path"), port, status_port))
        else:
            print("ok: %s GET /healthz on port %d" % (probe_name, port))
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if annotations.get("prometheus.io/scrape") == "true":
        port = annotations.get("prometheus.io/port")
        path = annotations.get("prometheus.io/path", "/metrics")
        if str(port) != str(status_port) or path != "/metrics":
            fail("prometheus.io annotations scrape %s on port %s, not /metrics on %s"
                 % (path, port, status_port))
        else:
            print("ok: prometheus.io annotations scrape /metrics on port %s" % port)
    for where, monitor in documents:
        if monitor.get("kind") != "PodMonitor":
            continue
        for endpoint in monitor["spec"].get("podMetricsEndpoints") or []:
            port = container_port(container, endpoint.get("port"))
            if port != status_port or endpoint.get("path", "/metrics") != "/metrics":
                fail("%s: scrapes %s on port %s, not /metrics on %s"
                     % (where, endpoint.get("path"), endpoint.get("port"), status_port))
            else:
                print("ok: %s scrapes /metrics on port %s (%d)" % (where, endpoint["port"], port))

    admin = settings.get("admin_listen", "127.0.0.1:9901")
    if admin != "off":
        host, admin_port = split_endpoint(admin)
        if not is_loopback(host):
            fail("admin_listen %s is not on loopback" % admin)
        if admin_port in ports:
            fail("admin_listen's port %d is a container port" % admin_port)
        if admin_port == status_port:
            fail("admin_listen and status_listen share port %d" % admin_port)
    print("ok: admin_listen %s stays on the pod's loopback" % admin)

    # The grace period covers the preStop pause and the whole drain.
    shutdown = duration_seconds(settings.get("shutdown_timeout", "30s"))
    pre_stop = ((container.get("lifecycle") or {}).get("preStop")) or {}
    pause = 0
    if "sleep" in pre_stop:
        pause = int(pre_stop["sleep"]["seconds"])
    elif "exec" in pre_stop:
        argv = pre_stop["exec"].get("command") or []
        if argv and os.path.basename(argv[0]) == "sleep":
            pause = duration_seconds(argv[1])
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if not grace > shutdown + pause:
        fail("terminationGracePeriodSeconds %s is not above shutdown_timeout %gs + "
             "preStop %gs" % (grace, shutdown, pause))
    else:
        print("ok: terminationGracePeriodSeconds %s > shutdown_timeout %gs + preStop %gs"
              % (grace, shutdown, pause))

    # Least privilege.
    pod_security = spec.get("securityContext") or {}
    security = container.get("securityContext") or {}
    if not (security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))):
        fail("runAsNonRoot is not true")
    if security.get("runAsUser", pod_security.get("runAsUser")) == 0:
        fail("runAsUser is 0")
    if security.get("readOnlyRootFilesystem") is not True:
        fail("readOnlyRootFilesystem is not true")
    if security.get("allowPrivilegeEscalation") is not False:
        fail("allowPrivilegeEscalation is not false")
    capabilities = security.get("capabilities") or {}
    if [c.upper() for c in capabilities.get("drop") or []] != ["ALL"]:
        fail("capabilities.drop is not [ALL]")
    added = [c.upper().removeprefix("CAP_") for c in capabilities.get("add") or []]
    low = [p for p in listen_ports if p < 1024]
    wanted = ["NET_BIND_SERVICE"] if low else []
    if added != wanted:
        fail("capabilities.add is %s; with listen ports %s it should be %s"
             % (added, listen_ports, wanted))
    resources = container.get("resources") or {}
    for part in ("requests", "limits"):
        if not all((resources.get(part) or {}).get(r) for r in ("cpu", "memory")):
            fail("resources.%s lacks cpu or memory" % part)
    print("ok: security context and resources checked (listen ports %s, capabilities "
          "added: %s)" % (listen_ports, added or "none"))

    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
