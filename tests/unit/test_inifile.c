/*
 * test_inifile: what the reader stores and what it reports, kaproxy's
 * meaning aside.
 *
 * Proves that headers are split into text, word and name; that keys before
 * any header land in a section of their own and keys under a malformed
 * header are dropped; that every entry keeps its line, repeats included;
 * and that bad lines are reported with their line and skipped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kaproxy/inifile.h"

struct report {
	unsigned count, line;
	char message[256];
};

static void
on_fail(void *user, unsigned line, const char *message)
{
	struct report *r = user;

	if (r->count++ == 0) {
		r->line = line;
		snprintf(r->message, sizeof(r->message), "%s", message);
	}
}

static void
test_sections_and_entries(void **state)
{
	static const char text[] =
	    "early = 1\n"
	    "[  listener   a b  ] ; comment\n"
	    "k = v ; comment\n"
	    "\n"
	    "  k = again # comment\n"
	    "[global\n"
	    "dropped = 1\n"
	    "[global]\n"
	    "x=\n";
	struct report r = { 0 };
	struct inifile f;
	const struct inifile_section *s;

	(void)state;
	assert_int_equal(inifile_read(text, strlen(text), &f, on_fail, &r), 0);
	assert_int_equal(r.count, 1);
	assert_int_equal(r.line, 6);
	assert_string_equal(r.message, "section header is missing ']'");
	assert_int_equal(f.lines, 9);
	assert_int_equal(f.n_sections, 3);

	s = &f.sections[0];
	assert_int_equal(s->line, 0);
	assert_int_equal(s->n_entries, 1);
	assert_string_equal(s->entries[0].key, "early");

	s = &f.sections[1];
	assert_int_equal(s->line, 2);
	assert_string_equal(s->text, "  listener   a b  ");
	assert_string_equal(s->word, "listener");
	assert_string_equal(s->name, "a b");
	assert_int_equal(s->n_entries, 2);
	assert_string_equal(s->entries[0].value, "v");
	assert_int_equal(s->entries[0].line, 3);
	assert_string_equal(s->entries[1].value, "again");
	assert_int_equal(s->entries[1].line, 5);

	s = &f.sections[2];
	assert_string_equal(s->word, "global");
	assert_string_equal(s->name, "");
	assert_int_equal(s->n_entries, 1);
	assert_string_equal(s->entries[0].value, "");
	assert_int_equal(s->entries[0].line, 9);
	inifile_free(&f);
	inifile_free(NULL);
}

/* A text and its length, which a NUL inside it does not end. */
#define TEXT(t) t, sizeof(t) - 1

static void
test_bad_lines(void **state)
{
	static const struct {
		const char *text;
		size_t len;
		unsigned line;
		const char *message;
	} cases[] = {
		{ TEXT("[a]\nkey value\n"), 2,
		  "expected \"key = value\", \"[section]\" or a comment" },
		{ TEXT("[a]\nkey: value\n"), 2,
		  "expected \"key = value\", \"[section]\" or a comment" },
		{ TEXT("[a]\n= value\n"), 2, "missing key name before '='" },
		{ TEXT("[a] b\n"), 1, "unexpected text after ']'" },
		{ TEXT("[a]\nk = v\0x\n"), 2, "line contains a NUL byte" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct report r = { 0 };
		struct inifile f;

		assert_int_equal(inifile_read(cases[i].text, cases[i].len, &f, on_fail, &r), 0);
		assert_int_equal(r.count, 1);
		assert_int_equal(r.line, cases[i].line);
		assert_string_equal(r.message, cases[i].message);
		inifile_free(&f);
	}
}

static void
test_long_line(void **state)
{
	char text[INIFILE_LINE_MAX + 16];
	struct report r = { 0 };
	struct inifile f;

	(void)state;
	memset(text, 'x', sizeof(text));
	memcpy(text, "[a]\nk = ", 8);
	text[4 + INIFILE_LINE_MAX] = '\n';
	assert_int_equal(inifile_read(text, 5 + INIFILE_LINE_MAX, &f, on_fail, &r), 0);
	assert_int_equal(r.count, 0);
	assert_int_equal(strlen(f.sections[0].entries[0].value), INIFILE_LINE_MAX - 4);
	inifile_free(&f);

	text[4 + INIFILE_LINE_MAX] = 'x';
	text[5 + INIFILE_LINE_MAX] = '\n';
	assert_int_equal(inifile_read(text, 6 + INIFILE_LINE_MAX, &f, on_fail, &r), 0);
	assert_int_equal(r.count, 1);
	assert_string_equal(r.message, "line is 197 characters long; the limit is 196");
	assert_int_equal(f.sections[0].n_entries, 0);
	inifile_free(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sections_and_entries),
		cmocka_unit_test(test_bad_lines),
		cmocka_unit_test(test_long_line),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
