/*
 * inifile.c: the configuration file's syntax, read through inih.
 *
 * Owns the reader that hands inih one line at a time and counts them (the
 * Debian build of inih gives its handler no line numbers), the refusal of
 * lines inih would cut or misread, section headers, and the raw entries
 * with their line numbers.  What the keys and sections mean is config.c's.
 *
 * Debian's inih has three habits this file works around: a line longer than
 * its 200-byte buffer is silently cut and its rest parsed as a new line; an
 * indented line continues the previous key; and only ';' starts an inline
 * comment.  So long lines are refused here, indentation is stripped, " #"
 * ends a line, and inih only ever sees "key = value" lines: everything else
 * reaches it as an empty line, which keeps its line count equal to ours.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "kaproxy/inifile.h"

struct reader {
	const char *pos, *end;      /* unread input */
	unsigned line;              /* line last handed to inih */
	struct inifile *file;
	long current;               /* section receiving keys; -1: none */
	bool skipping;              /* under a malformed header: ignore its keys */
	bool oom;
	inifile_fail_fn *fail;
	void *user;
};

static void reader_fail(struct reader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Report a problem with the line being read. */
static void
reader_fail(struct reader *r, const char *fmt, ...)
{
	char message[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	r->fail(r->user, r->line, message);
}

/* Make room for one more element of size bytes in *array; -1 on ENOMEM. */
static int
grow(void **array, size_t *cap, size_t n, size_t size)
{
	size_t want = *cap ? *cap * 2 : 8;
	void *grown;

	if (n < *cap)
		return 0;
	if ((grown = realloc(*array, want * size)) == NULL)
		return -1;
	*array = grown;
	*cap = want;
	return 0;
}

/* A new, empty section; NULL (and r->oom) when memory ran out. */
static struct inifile_section *
section_add(struct reader *r, unsigned line)
{
	struct inifile *f = r->file;
	struct inifile_section *s;

	if (grow((void **)&f->sections, &f->cap_sections, f->n_sections, sizeof(*s)) != 0) {
		r->oom = true;
		return NULL;
	}
	s = &f->sections[f->n_sections];
	memset(s, 0, sizeof(*s));
	s->line = line;
	r->current = (long)f->n_sections++;
	return s;
}

/* Copy [start, start + len) into dst (INIFILE_LINE_MAX + 1 bytes), trimmed. */
static void
copy_trimmed(char *dst, const char *start, size_t len)
{
	while (len > 0 && isspace((unsigned char)*start)) {
		start++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)start[len - 1]))
		len--;
	memcpy(dst, start, len);
	dst[len] = '\0';
}

/* A "[...]" line: make its section the one receiving keys. */
static void
on_header(struct reader *r, const char *line, size_t len)
{
	const char *close = memchr(line, ']', len), *word, *rest;
	struct inifile_section *s;

	r->current = -1;
	r->skipping = true; /* until the header proves good */
	if (close == NULL) {
		reader_fail(r, "section header is missing ']'");
		return;
	}
	for (const char *c = close + 1; c < line + len && *c != ';'; c++) {
		if (!isspace((unsigned char)*c)) {
			reader_fail(r, "unexpected text after ']'");
			return;
		}
	}
	if ((s = section_add(r, r->line)) == NULL)
		return;
	r->skipping = false;
	memcpy(s->text, line + 1, (size_t)(close - line - 1));
	s->text[close - line - 1] = '\0';
	for (word = line + 1; word < close && isspace((unsigned char)*word); word++)
		;
	for (rest = word; rest < close && !isspace((unsigned char)*rest); rest++)
		;
	copy_trimmed(s->word, word, (size_t)(rest - word));
	copy_trimmed(s->name, rest, (size_t)(close - rest));
}

/* inih handler: keep the entry, with its line, in the current section. */
static int
on_entry(void *user, const char *section, const char *key, const char *value)
{
	struct reader *r = user;
	struct inifile_section *s;
	struct inifile_entry *e;

	(void)section; /* sections are tracked by the reader, untruncated */
	if (r->oom || r->skipping)
		return 1;
	if (r->current < 0 && section_add(r, 0) == NULL)
		return 1;
	s = &r->file->sections[r->current];
	if (grow((void **)&s->entries, &s->cap_entries, s->n_entries, sizeof(*e)) != 0) {
		r->oom = true;
		return 1;
	}
	e = &s->entries[s->n_entries];
	e->key = strdup(key);
	e->value = strdup(value);
	e->line = r->line;
	if (e->key == NULL || e->value == NULL) {
		free(e->key);
		free(e->value);
		r->oom = true;
		return 1;
	}
	s->n_entries++;
	return 1;
}

/* The next line of input, without its line end (and a first line's BOM). */
static const char *
next_line(struct reader *r, size_t *len)
{
	const char *start = r->pos, *nl = memchr(start, '\n', (size_t)(r->end - start));

	*len = (size_t)((nl ? nl : r->end) - start);
	r->pos = nl ? nl + 1 : r->end;
	r->line++;
	if (*len > 0 && start[*len - 1] == '\r')
		(*len)--;
	if (r->line == 1 && *len >= 3 && memcmp(start, "\xEF\xBB\xBF", 3) == 0) {
		start += 3;
		*len -= 3;
	}
	return start;
}

/* Drop indentation (inih would glue the line onto the previous key) and a
 * comment: inih knows only ';' for inline comments; " #" starts one too. */
static const char *
strip_line(const char *start, size_t *len)
{
	while (*len > 0 && isspace((unsigned char)*start)) {
		start++;
		(*len)--;
	}
	for (size_t i = 1; i < *len; i++) {
		if (start[i] == '#' && isspace((unsigned char)start[i - 1])) {
			*len = i;
			break;
		}
	}
	return start;
}

/*
 * Whether a stripped line is "key = value" for inih; anything else is
 * handled (a header) or reported here.
 */
static bool
entry_line(struct reader *r, const char *start, size_t len)
{
	const char *eq, *colon;

	if (len == 0 || start[0] == ';' || start[0] == '#')
		return false;
	if (start[0] == '[') {
		on_header(r, start, len);
		return false;
	}
	eq = memchr(start, '=', len);
	colon = memchr(start, ':', len);
	if (eq == NULL || (colon != NULL && colon < eq)) {
		reader_fail(r, "expected \"key = value\", \"[section]\" or a comment");
		return false;
	}
	if (eq == start) {
		reader_fail(r, "missing key name before '='");
		return false;
	}
	return true;
}

/* inih reader: one line at a time, counted, judged before inih sees it. */
static char *
read_line(char *buf, int size, void *stream)
{
	struct reader *r = stream;
	const char *start;
	size_t len;

	if (r->pos >= r->end)
		return NULL;
	start = next_line(r, &len);
	snprintf(buf, (size_t)size, "\n"); /* what inih gets unless the line is a key */
	if (len > INIFILE_LINE_MAX || (int)len + 2 > size) {
		reader_fail(r, "line is %zu characters long; the limit is %d", len,
		    INIFILE_LINE_MAX);
		return buf;
	}
	if (memchr(start, '\0', len) != NULL) {
		reader_fail(r, "line contains a NUL byte");
		return buf;
	}
	start = strip_line(start, &len);
	if (!entry_line(r, start, len))
		return buf;
	memcpy(buf, start, len);
	buf[len] = '\n';
	buf[len + 1] = '\0';
	return buf;
}

int
inifile_read(const char *text, size_t len, struct inifile *file, inifile_fail_fn *fail,
    void *user)
{
	struct reader r = {
		.pos = text, .end = text + len, .file = file, .current = -1,
		.fail = fail, .user = user,
	};
	int rc;

	memset(file, 0, sizeof(*file));
	rc = ini_parse_stream(read_line, &r, on_entry, &r);
	file->lines = r.line;
	if (rc == -2 || r.oom)
		return -1;
	/* Everything inih could object to is screened in read_line; keep a
	 * message for whatever slips through. */
	if (rc > 0)
		fail(user, (unsigned)rc, "syntax error");
	return 0;
}

void
inifile_free(struct inifile *file)
{
	if (file == NULL)
		return;
	for (size_t i = 0; i < file->n_sections; i++) {
		for (size_t j = 0; j < file->sections[i].n_entries; j++) {
			free(file->sections[i].entries[j].key);
			free(file->sections[i].entries[j].value);
		}
		free(file->sections[i].entries);
	}
	free(file->sections);
	memset(file, 0, sizeof(*file));
}
