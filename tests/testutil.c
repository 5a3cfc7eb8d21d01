/*
 * testutil.c - see testutil.h. Temporary directories are created under
 * $TMPDIR (or /tmp) and removed recursively at exit unless SKY_KEEP_TMP is set.
 */
#include "config.h"

#include <CUnit/Basic.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static char *tmpdirs[256];
static int n_tmpdirs;

static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void cleanup_tmpdirs(void)
{
	if (getenv("SKY_KEEP_TMP"))
		return;
	for (int i = 0; i < n_tmpdirs; i++) {
		nftw(tmpdirs[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		free(tmpdirs[i]);
	}
	n_tmpdirs = 0;
}

const char *sky_test_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char tmpl[4096];
	snprintf(tmpl, sizeof(tmpl), "%s/skytest.XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		exit(99);
	}
	if (n_tmpdirs == 0)
		atexit(cleanup_tmpdirs);
	if (n_tmpdirs < 256)
		tmpdirs[n_tmpdirs++] = strdup(tmpl);
	return tmpdirs[n_tmpdirs - 1];
}

/* base/rel in a new string; exits the program when out of memory. */
static char *path_join(const char *base, const char *rel)
{
	size_t n = strlen(base) + strlen(rel) + 2;
	char *p = malloc(n);
	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(99);
	}
	snprintf(p, n, "%s/%s", base, rel);
	return p;
}

char *sky_test_data(const char *rel)
{
	const char *top = getenv("SKY_TOP_SRCDIR");
	char *base = path_join(top ? top : ".", "tests/data");
	char *p = path_join(base, rel);
	free(base);
	return p;
}

char *sky_test_fixture(const char *rel)
{
	const char *base = getenv("SKY_FIXTURES");
	char *dflt = NULL, *p;
	if (!base || !*base) {
		const char *top = getenv("SKY_TOP_SRCDIR");
		base = dflt = path_join(top ? top : ".", "../shared/fixtures");
	}
	p = path_join(base, rel);
	free(dflt);
	if (access(p, R_OK) != 0) {
		/* One line, so that a run without the fixtures says what it
		 * did not do, and still passes. */
		printf("\nskipped: %s not found (extra pass over the external "
		       "fixtures)\n",
		       p);
		fflush(stdout);
		free(p);
		return NULL;
	}
	return p;
}

char *sky_test_build_path(const char *rel)
{
	const char *base = getenv("SKY_TOP_BUILDDIR");
	if (!base)
		base = ".";
	char *p = malloc(strlen(base) + strlen(rel) + 2);
	sprintf(p, "%s/%s", base, rel);
	return p;
}

int sky_test_under_valgrind(void)
{
	static int cached = -1;
	if (cached < 0) {
		const char *v = getenv("SKY_UNDER_VALGRIND");
		cached = v && *v && strcmp(v, "0") != 0;
	}
	return cached;
}

int sky_test_workload(int full, int light)
{
	return sky_test_under_valgrind() ? light : full;
}

char *sky_test_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);
	size_t r;
	while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
		}
	}
	fclose(f);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

int sky_test_json_equal(const char *a, const char *b)
{
	json_t *ja = json_loads(a, JSON_DECODE_ANY, NULL);
	json_t *jb = json_loads(b, JSON_DECODE_ANY, NULL);
	int eq = ja && jb && json_equal(ja, jb);
	if (!eq)
		fprintf(stderr, "\nJSON differs:\n  %s\n  %s\n", a, b);
	json_decref(ja);
	json_decref(jb);
	return eq;
}

static int test_chosen(const char *name, const char *only)
{
	size_t n = strlen(only);
	if (n == 0 || only[n - 1] != '$')
		return strstr(name, only) != NULL;
	size_t len = strlen(name);
	return len >= n - 1 && !memcmp(name + len - (n - 1), only, n - 1);
}

int sky_test_main(const char *suite_name, const sky_test_case *cases)
{
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 99;
	CU_pSuite suite = CU_add_suite(suite_name, NULL, NULL);
	/* SKY_TEST_ONLY=WORD runs only the tests whose name contains WORD;
	 * WORD$ only those whose name ends with it. */
	const char *only = getenv("SKY_TEST_ONLY");
	for (const sky_test_case *c = cases; c->name; c++)
		if (!only || test_chosen(c->name, only))
			CU_add_test(suite, c->name, c->fn);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	unsigned failed =
	    CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	unsigned run = CU_get_number_of_tests_run();
	CU_cleanup_registry();
	if (run == 0)
		return 99;
	return failed ? 1 : 0;
}
