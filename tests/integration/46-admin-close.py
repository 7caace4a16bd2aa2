#!/usr/bin/env python3
"""POST /connections/ID/close closes one live connection and nothing else: with RST by default, with FIN on how=fin, close_reason admin in its record; 404 for an unknown id; and a page on another origin can neither read /connections (foreign Host, DNS rebinding) nor close a connection (foreign Origin).

Three connections through one listener; the admin endpoint on the proxy
namespace's loopback, driven with curl as a browser would send its headers.
"""
import lab


def main(t):
    srv = t.server(backlog=8)
    t.start_kaproxy({"t": lab.listener()}, {"admin_listen": lab.ADMIN_LISTEN})
    admin = lab.Admin(t)
    clients = []
    for i in range(3):
        cli = t.pair(srv, name="client-%d" % i)
        srv.ok("use %d" % cli.server_conn)
        t.exchange(cli, srv, 1000)
        clients.append((cli, cli.ok("info")["local"], cli.server_conn))
    ids = {v["client"]: v["id"] for v in admin.json("/connections")}
    t.check(len(ids) == 3, "three live connections listed (%d)" % len(ids))

    # A page elsewhere: its name rebound to 127.0.0.1, or a cross-site POST.
    code, _ = admin.request("/connections", headers=["Host: evil.example:9901"])
    t.check(code == 403, "GET /connections with a foreign Host: 403 (got %d)" % code)
    victim, addr, conn = clients[0]
    code, _ = admin.request("/connections/%d/close" % ids[addr], method="POST",
                            headers=["Origin: http://evil.example"])
    t.check(code == 403, "POST close with a foreign Origin: 403 (got %d)" % code)
    t.check(not t.access_log.closed("t", client=addr), "...and the connection lives on")

    # Closed with RST: both peers reset at once.
    victim.submit("wait_close 5")
    srv.ok("use %d" % conn)
    srv.submit("wait_close 5")
    code, body = admin.request("/connections/%d/close" % ids[addr], method="POST",
                               headers=["Origin: http://%s" % lab.ADMIN_LISTEN])
    t.check(code == 200 and '"how":"rst"' in body, "POST close (own Origin): 200 (%d %s)"
            % (code, body.strip()))
    t.check(victim.reply(10).status == "RESET", "the client is reset")
    t.check(srv.reply(10).status == "RESET", "the server is reset")
    rec = t.access_log.of("t", 5, client=addr)
    t.check_closed(rec, "admin", "rst", bytes_from_client=1000, bytes_to_client=1000)

    # how=fin: both peers get an orderly end.
    cli, addr, conn = clients[1]
    cli.submit("wait_close 5")
    srv.ok("use %d" % conn)
    srv.submit("wait_close 5")
    code, body = admin.request("/connections/%d/close?how=fin" % ids[addr], method="POST")
    t.check(code == 200 and '"how":"fin"' in body, "POST close?how=fin: 200 (%d)" % code)
    t.check(cli.reply(10).status == "EOF", "the client gets FIN")
    t.check(srv.reply(10).status == "EOF", "the server gets FIN")
    rec = t.access_log.of("t", 5, client=addr)
    t.check_closed(rec, "admin", "fin")

    # Gone now, and never was: 404; the bystander is untouched.
    code, _ = admin.request("/connections/%d/close" % ids[addr], method="POST")
    t.check(code == 404, "closing it again: 404 (got %d)" % code)
    code, _ = admin.request("/connections/999999/close", method="POST")
    t.check(code == 404, "an unknown id: 404 (got %d)" % code)
    code, _ = admin.request("/connections/%d/close" % ids[clients[2][1]])
    t.check(code == 405, "GET on the close route: 405 (got %d)" % code)
    cli, addr, conn = clients[2]
    srv.ok("use %d" % conn)
    t.exchange(cli, srv, 1000)
    t.check(not t.access_log.closed("t", client=addr), "the third connection still forwards")


if __name__ == "__main__":
    lab.run(main, __doc__)
