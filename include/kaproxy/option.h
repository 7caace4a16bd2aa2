/*
 * option: a row of the option table (one key: its type, range, default,
 * help and where its value is stored) and the value types a row can have.
 * Each type is one row of operations: parse a value, say what it accepts,
 * format it for `-t`, free it.  The table of kaproxy's keys is in config.c.
 */
#ifndef KAPROXY_OPTION_H
#define KAPROXY_OPTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum option_scope {
	OPTION_GLOBAL,    /* [global] only; stored in struct config */
	OPTION_LISTENER,  /* [defaults] and [listener NAME]; struct listener_config */
	OPTION_LEG,       /* as client_NAME and upstream_NAME where listener keys go;
	                   * stored in that side's struct leg_policy */
};

/* Keywords an option accepts besides its type's syntax; both store zero. */
#define OPTION_AUTO 1u
#define OPTION_OFF 2u

/*
 * Flag fields are stored as offset + 1 so that 0 (the value designated
 * initializers leave) means "no flag": offset 0 is a real field in
 * struct leg_policy.
 */
#define OPTION_FLAG_AT(type, member) (offsetof(type, member) + 1)

enum option_result { OPTION_OK = 0, OPTION_INVALID = -1, OPTION_NO_MEMORY = -2 };

struct option;

/* The operations of one value type. */
struct option_type {
	/* Store value (not empty, not a keyword) under base; on OPTION_INVALID
	 * why says what is wrong, as it follows "KEY: " in a message. */
	enum option_result (*parse)(const struct option *o, void *base, const char *value,
	    char *why, size_t len);
	/* What the type accepts, for "is not ..." messages: a fixed text, or
	 * (when syntax is NULL) one that depends on the option. */
	const char *syntax;
	void (*allowed)(const struct option *o, char *buf, size_t len);
	/* Its range ("1..127", "1ms..500h"), for "out of range" messages and the
	 * reference; NULL for a type without one. */
	void (*range)(const struct option *o, char *buf, size_t len);
	/* The stored value as -t shows it. */
	void (*format)(const struct option *o, const void *base, char *buf, size_t len);
	/* Free what the value owns and reset it to zero ("off"). */
	void (*clear)(const struct option *o, void *base);
	size_t size;  /* bytes of the stored value, for clearing plain ones */
};

extern const struct option_type option_uint;          /* uint32_t in min..max */
extern const struct option_type option_duration;      /* uint32_t ms in min..max */
extern const struct option_type option_seconds;       /* uint32_t s in min..max */
extern const struct option_type option_bool;          /* bool */
extern const struct option_type option_enum;          /* int: index into words */
extern const struct option_type option_endpoint;      /* struct endpoint */
extern const struct option_type option_endpoint_list; /* struct endpoint *, count */
extern const struct option_type option_path;          /* heap string; "-": stdout */

struct option {
	const char *name;
	enum option_scope scope;
	const struct option_type *type;
	unsigned accepts;          /* OPTION_AUTO | OPTION_OFF */
	uint64_t min, max;         /* uint: value; duration: ms; seconds: s */
	const char *fallback;      /* default as written in the file; NULL = required */
	const char *help;          /* what it does, one or two sentences */
	const char *label;         /* its word in the -t report; NULL: not listed */
	const char *remote_note;   /* endpoint: -t adds this to a non-loopback address */
	size_t off;                /* where the value is stored */
	size_t auto_flag;          /* OPTION_FLAG_AT bool: set iff the value was "auto" */
	size_t enabled_flag;       /* OPTION_FLAG_AT bool: set iff it was not "off" */
	size_t count_off;          /* endpoint list: where its size_t count is */
	const char *const *words;  /* enum: names in enum order, NULL-terminated */
	const char *sockopt;       /* seconds: the kernel option, for messages */
};

/*
 * Parse value for o and store it under base (the struct o's scope names).
 * Handles what every type shares: an empty value is refused, and "auto" or
 * "off", where o accepts them, clear the value and set its flags.  On
 * failure nothing is stored and why holds the message after "KEY: ".
 */
enum option_result option_set(const struct option *o, void *base, const char *value,
    char *why, size_t len);

/* What o accepts, keywords included: "1..256, or auto", "rst | fin". */
void option_allowed(const struct option *o, char *buf, size_t len);

/* For the reference: o's range where it has one, else what it accepts,
 * keywords included: "1s..32767s", "1ms..500h, or off", "rst | fin". */
void option_values(const struct option *o, char *buf, size_t len);

/* o's value under base as -t shows it: "1m 30s", "off", "2m (auto)". */
void option_format(const struct option *o, const void *base, char *buf, size_t len);

/* Free what o's value under base owns and reset it; for config_free. */
void option_clear(const struct option *o, void *base);

/* on/off, yes/no, true/false, 1/0, any case: 0, or -1. */
int option_parse_bool(const char *text, bool *value);

#endif
