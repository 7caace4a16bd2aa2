/*
 * inifile: an INI text read into sections of raw (key, value, line)
 * entries.  It knows the file's syntax, not kaproxy's keys or sections:
 * config.c judges what was read.
 */
#ifndef KAPROXY_INIFILE_H
#define KAPROXY_INIFILE_H

#include <stddef.h>

/* Longest line, in characters without the line end. */
#define INIFILE_LINE_MAX 196

struct inifile_entry {
	char *key;
	char *value;
	unsigned line;
};

struct inifile_section {
	/* What the header says, each NUL-terminated: text as written between
	 * '[' and ']', its first word, and the rest, trimmed ("" if none).
	 * Keys written before any header land in a section with line 0 and
	 * empty texts. */
	char text[INIFILE_LINE_MAX + 1];
	char word[INIFILE_LINE_MAX + 1];
	char name[INIFILE_LINE_MAX + 1];
	unsigned line;                  /* of the header; 0 before any header */
	struct inifile_entry *entries;  /* in file order, repeated keys too */
	size_t n_entries, cap_entries;
};

struct inifile {
	struct inifile_section *sections; /* in file order */
	size_t n_sections, cap_sections;
	unsigned lines;                   /* how many lines the text has */
};

/* Told about each line that is not an entry, a header or a comment. */
typedef void inifile_fail_fn(void *user, unsigned line, const char *message);

/*
 * Read len bytes of text into *file (which it initialises).  Each bad line
 * is reported to fail with its line number and skipped; so are the keys
 * under a malformed header.  Returns 0, or -1 when memory ran out.  Either
 * way *file is released with inifile_free.
 */
int inifile_read(const char *text, size_t len, struct inifile *file, inifile_fail_fn *fail,
    void *user);

/* Free what inifile_read stored; the struct itself belongs to the caller. */
void inifile_free(struct inifile *file);

#endif
