/*
 * kaproxy-reference: the configuration reference, printed from the option
 * table in src/config.c so that the documentation cannot drift from the
 * code.  Built with kaproxy, not installed.
 *
 *   kaproxy-reference man       kaproxy.ini(5) in roff (packaging/kaproxy.ini.5)
 *   kaproxy-reference markdown  the README's option tables
 *   kaproxy-reference keys      every key, one a line (client_ and upstream_ spelled out)
 *
 * tools/update-reference writes the first two into the tree, or checks them.
 */
#include <stdio.h>
#include <string.h>

#include "kaproxy/config.h"
#include "kaproxy/option.h"
#include "kaproxy/reason.h"

/* What introduces each scope's table in the README. */
static const char *const scope_intros[] = {
	[OPTION_GLOBAL] = "In `[global]`:",
	[OPTION_LISTENER] = "In `[listener NAME]`, or in `[defaults]` for every listener:",
	[OPTION_LEG] = "Per leg, as `client_KEY` (the accepted socket) and `upstream_KEY` "
	    "(the socket kaproxy connects), in `[listener NAME]` or `[defaults]`:",
};

/* ------------------------------------------------------------------------ */
/* roff                                                                      */

/*
 * Text for a roff line: backslashes escaped, a lone "-" (a literal, as in
 * "- for stdout") written as a minus, and a line that would start with a
 * control character guarded.
 */
static void
roff_text(FILE *out, const char *text)
{
	if (text[0] == '.' || text[0] == '\'')
		fputs("\\&", out);
	for (const char *c = text; *c; c++) {
		bool lone = *c == '-' && (c == text || c[-1] == ' ') &&
		    (c[1] == '\0' || c[1] == ' ');

		if (*c == '\\')
			fputs("\\e", out);
		else if (lone)
			fputs("\\-", out);
		else
			fputc(*c, out);
	}
}

/* ".B client_keepalive\n" or ".BR client_keepalive , upstream_keepalive\n" */
static void
roff_key(FILE *out, const struct option *o)
{
	if (o->scope != OPTION_LEG)
		fprintf(out, ".B %s\n", o->name);
	else
		fprintf(out, ".BR %s_%s \", \" %s_%s\n", reason_side_name(SIDE_CLIENT), o->name,
		    reason_side_name(SIDE_UPSTREAM), o->name);
}

static void
roff_option(FILE *out, const struct option *o)
{
	char values[256];

	option_values(o, values, sizeof(values));
	fputs(".TP\n", out);
	roff_key(out, o);
	roff_text(out, o->help);
	fputs("\n.br\nValues: ", out);
	roff_text(out, values);
	if (o->fallback == NULL) {
		fputs(".\nRequired.\n", out);
	} else {
		fputs(".\nDefault: ", out);
		roff_text(out, o->fallback);
		fputs(".\n", out);
	}
}

static void
roff_options(FILE *out, enum option_scope scope)
{
	size_t n;
	const struct option *options = config_options(&n);

	for (size_t i = 0; i < n; i++)
		if (options[i].scope == scope)
			roff_option(out, &options[i]);
}

static const char man_head[] =
    ".TH KAPROXY.INI 5 \"\" \"kaproxy " KAPROXY_VERSION "\" \"File Formats\"\n"
    ".\\\" Key names and addresses read better unhyphenated and unstretched.\n"
    ".nh\n"
    ".ad l\n"
    ".SH NAME\n"
    "kaproxy.ini \\- configuration file of the kaproxy TCP proxy\n"
    ".SH SYNOPSIS\n"
    ".I /etc/kaproxy/kaproxy.ini\n"
    ".SH DESCRIPTION\n"
    ".BR kaproxy (8)\n"
    "reads this file at start and again on SIGHUP, and uses it only when all of\n"
    "it is valid. Check a file with\n"
    ".B kaproxy \\-t \\-c\n"
    ".IR file ,\n"
    "which also prints each listener's effective policy and its worst-case\n"
    "dead-peer detection time per side.\n"
    ".PP\n"
    "The file has three kinds of section:\n"
    ".TP\n"
    ".B [global]\n"
    "settings of the whole process.\n"
    ".TP\n"
    ".B [defaults]\n"
    "any listener key: every listener inherits it unless it sets the key itself,\n"
    "wherever [defaults] stands in the file.\n"
    ".TP\n"
    ".BI \"[listener \" NAME ]\n"
    "one per listening address. NAME is 1..63 letters, digits, '\\-', '_' or '.',\n"
    "unique in the file; logs and metrics name the listener by it.\n"
    ".SH SYNTAX\n"
    "One \"key = value\" per line. Keys are lower case; keywords (auto, off, the\n"
    "words of a list) and booleans may be written in any case.\n"
    "A comment starts with ';' or '#' at the beginning of a line, or after a\n"
    "blank at its end. Leading blanks are ignored: there are no continuation\n"
    "lines. A line holds at most 196 characters; a longer one is refused, not\n"
    "cut. A key may be set once per section; a repeated [global] or [defaults]\n"
    "continues the first one. A UTF-8 byte-order mark and CRLF line ends are\n"
    "accepted.\n"
    ".SH VALUES\n"
    ".TP\n"
    ".I duration\n"
    "integer seconds, or a number with unit ms, s, m or h: 250ms, 30s, 1.5s, 5m,\n"
    "2h. It must come to whole milliseconds; a keepalive idle or interval to\n"
    "whole seconds, which is what the kernel counts in.\n"
    ".TP\n"
    ".I boolean\n"
    "on/off, yes/no, true/false, 1/0.\n"
    ".TP\n"
    ".I endpoint\n"
    "host:port, or [v6]:port for IPv6. A host name is looked up once, when the\n"
    "file is read; its first IPv4 address is used, else its first IPv6 one.\n"
    ".TP\n"
    ".BR auto \", \" off\n"
    "where a key's values list them.\n";

static const char man_tail[] =
    ".SH DIAGNOSTICS\n"
    "An invalid file is refused as a whole, with one message naming the file,\n"
    "the line, the key, what is wrong and what is allowed:\n"
    ".PP\n"
    ".RS\n"
    ".nf\n"
    "bad.ini:7: client_keepalive_count: 200 is out of range (1..127)\n"
    ".fi\n"
    ".RE\n"
    ".PP\n"
    "When several things are wrong, the one on the earliest line is reported.\n"
    ".SH EXAMPLE\n"
    "In front of a server that never sets keepalive, for clients behind a NAT\n"
    "that forgets idle flows after 350 s:\n"
    ".PP\n"
    ".RS\n"
    ".nf\n"
    "[listener legacy]\n"
    "listen = 0.0.0.0:6432\n"
    "upstream = 10.0.0.5:5432\n"
    "client_keepalive_idle = 60s\n"
    "client_nat_timeout = 350s\n"
    ".fi\n"
    ".RE\n"
    ".SH FILES\n"
    ".TP\n"
    ".I /etc/kaproxy/kaproxy.ini\n"
    "the configuration; the shipped one sets every key, each with a comment.\n"
    ".SH SEE ALSO\n"
    ".BR kaproxy (8)\n";

static void
print_man(FILE *out)
{
	fputs(".\\\" Generated by kaproxy-reference from the option table in src/config.c;\n"
	    ".\\\" do not edit: run tools/update-reference.\n", out);
	fputs(man_head, out);
	fputs(".SH \"GLOBAL KEYS\"\nIn [global] only.\n", out);
	roff_options(out, OPTION_GLOBAL);
	fputs(".SH \"LISTENER KEYS\"\nIn [listener NAME], or in [defaults] for every "
	    "listener.\n", out);
	roff_options(out, OPTION_LISTENER);
	fputs(".SH \"PER-LEG KEYS\"\nEach exists twice: client_KEY for the accepted socket "
	    "and\nupstream_KEY for the socket kaproxy connects, in [listener NAME] or in\n"
	    "[defaults].\n", out);
	roff_options(out, OPTION_LEG);
	fputs(man_tail, out);
}

/* ------------------------------------------------------------------------ */
/* Markdown                                                                  */

/* Text for a table cell: '|' would end the cell. */
static void
md_text(FILE *out, const char *text)
{
	for (const char *c = text; *c; c++) {
		if (*c == '|')
			fputc('\\', out);
		fputc(*c, out);
	}
}

static void
md_option(FILE *out, const struct option *o)
{
	char values[256];

	if (o->scope != OPTION_LEG)
		fprintf(out, "| `%s` | ", o->name);
	else
		fprintf(out, "| `%s_%s`, `%s_%s` | ", reason_side_name(SIDE_CLIENT), o->name,
		    reason_side_name(SIDE_UPSTREAM), o->name);
	if (o->fallback != NULL)
		fprintf(out, "`%s`", o->fallback);
	else
		fputs("(required)", out);
	option_values(o, values, sizeof(values));
	fputs(" | ", out);
	md_text(out, values);
	fputs(" | ", out);
	md_text(out, o->help);
	fputs(" |\n", out);
}

static void
print_markdown(FILE *out)
{
	size_t n;
	const struct option *options = config_options(&n);

	for (int scope = OPTION_GLOBAL; scope <= OPTION_LEG; scope++) {
		fprintf(out, "%s%s\n\n| key | default | values | meaning |\n|---|---|---|---|\n",
		    scope == OPTION_GLOBAL ? "" : "\n", scope_intros[scope]);
		for (size_t i = 0; i < n; i++)
			if (options[i].scope == (enum option_scope)scope)
				md_option(out, &options[i]);
	}
}

/* ------------------------------------------------------------------------ */

static void
print_keys(FILE *out)
{
	size_t n;
	const struct option *options = config_options(&n);

	for (size_t i = 0; i < n; i++) {
		if (options[i].scope != OPTION_LEG)
			fprintf(out, "%s\n", options[i].name);
		else
			fprintf(out, "%s_%s\n%s_%s\n", reason_side_name(SIDE_CLIENT), options[i].name,
			    reason_side_name(SIDE_UPSTREAM), options[i].name);
	}
}

int
main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*print)(FILE *out);
	} outputs[] = {
		{ "man", print_man }, { "markdown", print_markdown }, { "keys", print_keys },
	};

	for (size_t i = 0; argc == 2 && i < sizeof(outputs) / sizeof(outputs[0]); i++) {
		if (strcmp(argv[1], outputs[i].name) == 0) {
			outputs[i].print(stdout);
			return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
		}
	}
	fprintf(stderr, "usage: kaproxy-reference man | markdown | keys\n");
	return 2;
}
