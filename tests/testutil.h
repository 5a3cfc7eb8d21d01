/*
 * testutil.h - shared helpers of the CUnit test programs: a runner that
 * registers one suite and exits non-zero on any failure, temporary cache
 * directories removed at exit, paths to fixtures and built programs, and
 * the size of the heavy workloads under valgrind.
 */
#ifndef SKY_TESTUTIL_H
#define SKY_TESTUTIL_H

#include <CUnit/CUnit.h>
#include <stddef.h>

typedef struct {
	const char *name;
	void (*fn)(void);
} sky_test_case;

/* Run `cases` (terminated by {NULL, NULL}) as one suite; returns the exit
 * status. SKY_TEST_ONLY=WORD in the environment runs only the names containing
 * WORD (WORD$: ending with WORD). */
int sky_test_main(const char *suite, const sky_test_case *cases);

/* A fresh empty directory (mode 0700) removed when the program exits. */
const char *sky_test_tmpdir(void);

/* $SKY_TOP_SRCDIR/tests/data/rel: the project's own test data (the
 * source directory defaults to "." when run by hand from the top). */
char *sky_test_data(const char *rel);
/*
 * rel under the optional fixtures kept outside the project ($SKY_FIXTURES,
 * default ../shared/fixtures beside the source tree), or NULL when that file
 * is not there: then one line saying the extra pass is skipped is printed,
 * and the caller skips it (the suite never needs these fixtures).
 */
char *sky_test_fixture(const char *rel);
/* $SKY_TOP_BUILDDIR/rel (default "."). */
char *sky_test_build_path(const char *rel);

/*
 * Whether the program runs under valgrind: SKY_UNDER_VALGRIND is set (make
 * check-valgrind sets it) and not empty or "0".
 */
int sky_test_under_valgrind(void);

/*
 * The size of a randomized or large workload: `full` normally, `light`
 * under valgrind. Memcheck runs the code some 30 times slower, and finds
 * a bad access the first time a path runs, not the hundredth: the light
 * size must still take every path the test is about (and keep every
 * assertion able to fail), with fewer repetitions of them.
 */
int sky_test_workload(int full, int light);

/* Read a whole file; NULL on error. *len may be NULL. Free with free(). */
char *sky_test_read_file(const char *path, size_t *len);

/* Assert two JSON texts are equal as JSON values (order of keys ignored). */
#define SKY_ASSERT_JSON_EQ(a, b) CU_ASSERT(sky_test_json_equal((a), (b)))
int sky_test_json_equal(const char *a, const char *b);

#endif
