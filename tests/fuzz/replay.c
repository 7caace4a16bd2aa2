/*
 * replay.c: a main() that feeds every file of a corpus directory to a fuzz
 * target's LLVMFuzzerTestOneInput, once each, in name order.
 *
 * Linked with each tests/fuzz/fuzz_<name>.c in every build, gcc included, so
 * the corpus (seeds, and every input that ever crashed a target) is a unit
 * test wherever the suite runs, without clang or libFuzzer.  A corpus that
 * is missing or empty fails: a test that feeds nothing proves nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Read all of path into a fresh buffer (not NUL-terminated, as libFuzzer
 * hands it: the target must not read past size).  NULL on failure. */
static uint8_t *
read_file(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data = NULL;
	struct stat st;

	if (f == NULL || fstat(fileno(f), &st) != 0)
		goto err;
	/* malloc(0) may return NULL; one spare byte keeps empty files readable. */
	if ((data = malloc((size_t)st.st_size + 1)) == NULL)
		goto err;
	*size = fread(data, 1, (size_t)st.st_size, f);
	if (ferror(f) || *size != (size_t)st.st_size)
		goto err;
	fclose(f);
	return data;
err:
	fprintf(stderr, "replay: %s: %s\n", path, strerror(errno ? errno : EIO));
	free(data);
	if (f != NULL)
		fclose(f);
	return NULL;
}

static int
by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

int
main(int argc, char **argv)
{
	struct dirent **names = NULL;
	int n, fed = 0, rc = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);
	if ((n = scandir(argv[1], &names, NULL, by_name)) < 0) {
		fprintf(stderr, "replay: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		struct stat st;
		uint8_t *data;
		size_t size;

		if (snprintf(path, sizeof(path), "%s/%s", argv[1], names[i]->d_name) >=
		    (int)sizeof(path)) {
			fprintf(stderr, "replay: %s/%s: path too long\n", argv[1], names[i]->d_name);
			goto out;
		}
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if ((data = read_file(path, &size)) == NULL)
			goto out;
		LLVMFuzzerTestOneInput(data, size);
		free(data);
		fed++;
	}
	if (fed == 0) {
		fprintf(stderr, "replay: %s: no input files\n", argv[1]);
		goto out;
	}
	printf("replay: %d inputs from %s, none crashed\n", fed, argv[1]);
	rc = 0;
out:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}
