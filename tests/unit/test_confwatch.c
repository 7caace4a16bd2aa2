/*
 * Goal: reload_on_change reacts to what can change the configuration path
 * (its own name, a ConfigMap's ..data swap) and to nothing else in the
 * directory; a burst of events waits for quiet but never longer than the
 * bound; the file's print tells a content change from a touch; and a live
 * watch calls back once after an editor's rename, a ..data swap or a relative
 * path's change, not after a touch, and stops when its directory goes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "harness.h"
#include "kaproxy/confwatch.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define LOOP_BOUND_MS 5000   /* no awaited callback takes this long */

static void
test_classify(void **state)
{
	static const struct {
		const char *name;
		uint32_t mask;
		enum confwatch_event want;
	} cases[] = {
		{ "kaproxy.ini", IN_CLOSE_WRITE, CONFWATCH_CHANGE },   /* written in place */
		{ "kaproxy.ini", IN_MOVED_TO, CONFWATCH_CHANGE },      /* renamed over */
		{ "kaproxy.ini", IN_MOVED_FROM, CONFWATCH_CHANGE },    /* renamed away */
		{ "kaproxy.ini", IN_CREATE, CONFWATCH_CHANGE },        /* a new file or symlink */
		{ "kaproxy.ini", IN_DELETE, CONFWATCH_CHANGE },
		{ "kaproxy.ini", IN_ATTRIB, CONFWATCH_CHANGE },        /* chmod: readable now */
		{ "kaproxy.ini", IN_MODIFY, CONFWATCH_IGNORE },        /* CLOSE_WRITE follows */
		{ "kaproxy.ini", IN_OPEN, CONFWATCH_IGNORE },
		{ "..data", IN_MOVED_TO, CONFWATCH_CHANGE },           /* kubelet's swap */
		{ "..data", IN_CREATE, CONFWATCH_CHANGE },
		{ "..data_tmp", IN_CREATE, CONFWATCH_IGNORE },
		{ "..data_tmp", IN_MOVED_FROM, CONFWATCH_IGNORE },
		{ "..2026_11_25_20_00_00.1", IN_CREATE | IN_ISDIR, CONFWATCH_IGNORE },
		{ "kaproxy.ini.new", IN_CLOSE_WRITE, CONFWATCH_IGNORE },
		{ "kaproxy.ini~", IN_MOVED_TO, CONFWATCH_IGNORE },
		{ ".kaproxy.ini.swp", IN_CLOSE_WRITE, CONFWATCH_IGNORE },
		{ "kaproxy", IN_MOVED_TO, CONFWATCH_IGNORE },
		{ NULL, IN_ATTRIB | IN_ISDIR, CONFWATCH_IGNORE },      /* the directory's own */
		{ "", IN_ATTRIB, CONFWATCH_IGNORE },
		{ NULL, IN_DELETE_SELF, CONFWATCH_GONE },
		{ NULL, IN_MOVE_SELF, CONFWATCH_GONE },
		{ NULL, IN_UNMOUNT, CONFWATCH_GONE },
		{ NULL, IN_IGNORED, CONFWATCH_GONE },
		{ NULL, IN_Q_OVERFLOW, CONFWATCH_CHANGE },             /* events were lost */
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		enum confwatch_event got = confwatch_classify("kaproxy.ini", cases[i].name,
		    cases[i].mask);

		if (got != cases[i].want)
			fail_msg("%s mask 0x%x: got %d, want %d", cases[i].name ? cases[i].name : "(dir)",
			    cases[i].mask, got, cases[i].want);
	}
}

static void
test_delay_bounded(void **state)
{
	(void)state;
	/* A lone event: the quiet period. */
	assert_int_equal(confwatch_delay_ms(1000, 1000), CONFWATCH_QUIET_MS);
	/* More events restart it... */
	assert_int_equal(confwatch_delay_ms(1000, 1250), CONFWATCH_QUIET_MS);
	assert_int_equal(confwatch_delay_ms(1000, 1000 + CONFWATCH_MAX_DELAY_MS - CONFWATCH_QUIET_MS),
	    CONFWATCH_QUIET_MS);
	/* ...but never past the bound after the first. */
	assert_int_equal(confwatch_delay_ms(1000, 1000 + CONFWATCH_MAX_DELAY_MS - 100), 100);
	assert_int_equal(confwatch_delay_ms(1000, 1000 + CONFWATCH_MAX_DELAY_MS), 0);
	assert_int_equal(confwatch_delay_ms(1000, 1000 + 10 * CONFWATCH_MAX_DELAY_MS), 0);
	/* An event every 100 ms forever still reads the file by the bound. */
	{
		uint64_t first = 5000, t = first, due = first + confwatch_delay_ms(first, first);

		while (t + 100 < due) {
			t += 100;
			due = t + confwatch_delay_ms(first, t);
		}
		assert_true(due <= first + CONFWATCH_MAX_DELAY_MS);
	}
}

static char *
join(const char *dir, const char *name)
{
	char *p;

	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* As an editor saves: a new file renamed over the old one. */
static void
replace_file(const char *path, const char *text)
{
	char tmp[PATH_MAX];

	snprintf(tmp, sizeof(tmp), "%s.new", path);
	write_file(tmp, text);
	assert_int_equal(rename(tmp, path), 0);
}

static void
rm_tree(const char *dir)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static char start_cwd[PATH_MAX];

/* Each live test gets a fresh directory under /tmp as *state, removed
 * afterwards even when the test failed half way. */
static int
dir_setup(void **state)
{
	char *dir = strdup("/tmp/kaproxy-confwatch.XXXXXX");

	if (dir == NULL || mkdtemp(dir) == NULL || getcwd(start_cwd, sizeof(start_cwd)) == NULL) {
		free(dir);
		return -1;
	}
	*state = dir;
	return 0;
}

static int
dir_teardown(void **state)
{
	char *dir = *state;

	if (chdir(start_cwd) == -1)
		return -1;
	rm_tree(dir);
	free(dir);
	return 0;
}

static void
test_print(void **state)
{
	char *dir = *state, *path = join(dir, "kaproxy.ini");
	struct confwatch_print a, b, missing, missing2;

	write_file(path, "[global]\nworkers = 1\n");
	confwatch_print_file(path, &a);
	assert_int_equal(a.err, 0);
	assert_int_equal(a.size, strlen("[global]\nworkers = 1\n"));
	/* Touched, and rewritten with the same bytes: the same print. */
	assert_int_equal(utimensat(AT_FDCWD, path, NULL, 0), 0);
	confwatch_print_file(path, &b);
	assert_true(confwatch_print_equal(&a, &b));
	replace_file(path, "[global]\nworkers = 1\n");
	confwatch_print_file(path, &b);
	assert_true(confwatch_print_equal(&a, &b));
	/* One byte different, same size: another print. */
	replace_file(path, "[global]\nworkers = 2\n");
	confwatch_print_file(path, &b);
	assert_int_equal(b.size, a.size);
	assert_false(confwatch_print_equal(&a, &b));
	/* Gone: a print of its own, stable, different from any content. */
	assert_int_equal(unlink(path), 0);
	confwatch_print_file(path, &missing);
	confwatch_print_file(path, &missing2);
	assert_int_equal(missing.err, ENOENT);
	assert_true(confwatch_print_equal(&missing, &missing2));
	assert_false(confwatch_print_equal(&missing, &a));
	/* Empty is not missing. */
	write_file(path, "");
	confwatch_print_file(path, &b);
	assert_int_equal(b.err, 0);
	assert_false(confwatch_print_equal(&missing, &b));
	free(path);
}

/* A live watch on its own loop; changed() counts and stops the loop. */
struct live {
	struct event_base *base;
	struct event *bound;        /* the loop's time limit */
	struct confwatch *watch;
	struct confwatch_print loaded;
	const char *path;           /* as given to confwatch_new */
	unsigned calls;
	bool timed_out;
};

static void
changed(void *arg)
{
	struct live *l = arg;

	l->calls++;
	/* What main's reload does before it reads the file. */
	confwatch_print_file(l->path, &l->loaded);
	event_base_loopbreak(l->base);
}

static void
bound_cb(evutil_socket_t fd, short what, void *arg)
{
	struct live *l = arg;

	(void)fd;
	(void)what;
	l->timed_out = true;
	event_base_loopbreak(l->base);
}

static void
live_start(struct live *l, const char *path)
{
	memset(l, 0, sizeof(*l));
	l->base = event_base_new();
	assert_non_null(l->base);
	l->bound = evtimer_new(l->base, bound_cb, l);
	assert_non_null(l->bound);
	l->path = path;
	confwatch_print_file(path, &l->loaded);
	l->watch = confwatch_new(l->base, path, &l->loaded, changed, l);
	assert_non_null(l->watch);
	assert_true(confwatch_watching(l->watch));
}

/* Run the loop until changed() or ms; returns how long it ran. */
static uint64_t
live_run(struct live *l, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	uint64_t t0 = now_ms();

	l->timed_out = false;
	assert_int_equal(evtimer_add(l->bound, &tv), 0);
	assert_int_equal(event_base_loop(l->base, 0), 0);
	evtimer_del(l->bound);
	return now_ms() - t0;
}

static void
live_stop(struct live *l)
{
	confwatch_free(l->watch);
	event_free(l->bound);
	event_base_free(l->base);
}

static void
test_live_editor_rename_and_touch(void **state)
{
	char *dir = *state, *path = join(dir, "kaproxy.ini"), *other = join(dir, "other.ini");
	struct live l;
	uint64_t took;

	write_file(path, "one\n");
	live_start(&l, path);

	/* Another file of the directory: nothing. */
	write_file(other, "x\n");
	free(other);
	/* The editor's save: one call, after the quiet period. */
	replace_file(path, "two\n");
	took = live_run(&l, LOOP_BOUND_MS);
	assert_false(l.timed_out);
	assert_int_equal(l.calls, 1);
	assert_true(took + 20 >= CONFWATCH_QUIET_MS);

	/* A burst of in-place writes: one call, for the last content. */
	for (int i = 0; i < 5; i++) {
		char text[32];

		snprintf(text, sizeof(text), "burst %d\n", i);
		write_file(path, text);
	}
	live_run(&l, LOOP_BOUND_MS);
	assert_false(l.timed_out);
	assert_int_equal(l.calls, 2);
	{
		struct confwatch_print last;

		confwatch_print_file(path, &last);
		assert_true(confwatch_print_equal(&last, &l.loaded));
	}

	/* A touch and a rewrite with the same bytes: no call.  Nothing is logged
	 * above debug then, so this waits past the quiet period, bounded. */
	assert_int_equal(utimensat(AT_FDCWD, path, NULL, 0), 0);
	write_file(path, "burst 4\n");
	live_run(&l, CONFWATCH_MAX_DELAY_MS + 500);
	assert_true(l.timed_out);
	assert_int_equal(l.calls, 2);

	/* Deleted: the path resolves to nothing now, which the reload reports. */
	assert_int_equal(unlink(path), 0);
	live_run(&l, LOOP_BOUND_MS);
	assert_false(l.timed_out);
	assert_int_equal(l.calls, 3);
	assert_int_equal(l.loaded.err, ENOENT);

	live_stop(&l);
	free(path);
}

/* kubelet's atomic writer: kaproxy.ini -> ..data/kaproxy.ini, ..data -> a
 * timestamped directory; an update makes a new directory, a ..data_tmp
 * symlink to it, renames that over ..data and removes the old directory. */
static void
k8s_publish(const char *dir, const char *stamp, const char *text, const char *old_stamp)
{
	char *ts = join(dir, stamp), *file = join(ts, "kaproxy.ini");
	char *tmp = join(dir, "..data_tmp"), *data = join(dir, "..data");

	assert_int_equal(mkdir(ts, 0755), 0);
	write_file(file, text);
	assert_int_equal(symlink(stamp, tmp), 0);
	assert_int_equal(rename(tmp, data), 0);
	if (old_stamp != NULL) {
		char *old = join(dir, old_stamp);

		rm_tree(old);
		free(old);
	}
	free(ts);
	free(file);
	free(tmp);
	free(data);
}

static void
test_live_k8s_swap(void **state)
{
	char *dir = *state, *path = join(dir, "kaproxy.ini");
	struct live l;

	k8s_publish(dir, "..2026_11_25_20_00_00.000000001", "v1\n", NULL);
	assert_int_equal(symlink("..data/kaproxy.ini", path), 0);
	live_start(&l, path);

	k8s_publish(dir, "..2026_11_25_20_01_00.000000002", "v2\n",
	    "..2026_11_25_20_00_00.000000001");
	live_run(&l, LOOP_BOUND_MS);
	assert_false(l.timed_out);
	assert_int_equal(l.calls, 1);
	assert_int_equal(l.loaded.size, 3);

	/* A new version with the same content (another key of the ConfigMap
	 * changed): no call. */
	k8s_publish(dir, "..2026_11_25_20_02_00.000000003", "v2\n",
	    "..2026_11_25_20_01_00.000000002");
	live_run(&l, CONFWATCH_MAX_DELAY_MS + 500);
	assert_true(l.timed_out);
	assert_int_equal(l.calls, 1);

	live_stop(&l);
	free(path);
}

static void
test_live_relative_path(void **state)
{
	char *dir = *state;
	struct live l;

	assert_int_equal(chdir(dir), 0);
	write_file("kaproxy.ini", "one\n");
	live_start(&l, "kaproxy.ini");
	replace_file("kaproxy.ini", "two\n");
	live_run(&l, LOOP_BOUND_MS);
	assert_false(l.timed_out);
	assert_int_equal(l.calls, 1);
	live_stop(&l);
}

static void
stop_when_gone(evutil_socket_t fd, short what, void *arg)
{
	struct live *l = arg;

	(void)fd;
	(void)what;
	if (!confwatch_watching(l->watch))
		event_base_loopbreak(l->base);
}

static void
test_directory_gone_and_unwatchable(void **state)
{
	char *dir = *state, *path = join(dir, "kaproxy.ini");
	struct live l;
	struct event *poll;
	struct timeval every = { 0, 20000 };
	struct confwatch_print none;

	live_start(&l, path);   /* the file need not exist; its directory must */
	poll = event_new(l.base, -1, EV_PERSIST, stop_when_gone, &l);
	assert_int_equal(event_add(poll, &every), 0);
	rm_tree(dir);
	live_run(&l, LOOP_BOUND_MS);
	assert_false(l.timed_out);
	assert_false(confwatch_watching(l.watch));
	assert_int_equal(l.calls, 0);
	event_free(poll);

	/* No directory, or not a directory: refused (logged), NULL. */
	memset(&none, 0, sizeof(none));
	assert_null(confwatch_new(l.base, path, &none, changed, &l));
	assert_null(confwatch_new(l.base, "/dev/null/kaproxy.ini", &none, changed, &l));
	assert_false(confwatch_watching(NULL));
	confwatch_free(NULL);
	live_stop(&l);
	free(path);
}

#define IN_DIR(test) cmocka_unit_test_setup_teardown(test, dir_setup, dir_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_delay_bounded),
		IN_DIR(test_print),
		IN_DIR(test_live_editor_rename_and_touch),
		IN_DIR(test_live_k8s_swap),
		IN_DIR(test_live_relative_path),
		IN_DIR(test_directory_gone_and_unwatchable),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
