/* Unit tests for what keeps the host safe: the registry of the agent's own descriptors (agent/ownfd.c) and rate-limited warnings (agent/log.c). */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/log.h"
#include "agent/ownfd.h"

static bool is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

/* A pipe whose read end p[0] the agent registers as its own; returns the slot. */
static int owned_pipe(int p[2])
{
	ck_assert_int_eq(pipe(p), 0);
	int slot = ownfd_add(p[0]);
	ck_assert_int_ge(slot, 0);
	return slot;
}

/* Our descriptor fd was closed behind the agent's back: the app's next file
 * takes its number, the agent never uses it and forgets the slot without
 * closing the app's file. */
static void app_file_takes_number(int slot, int fd)
{
	int app = open("/dev/null", O_RDONLY);
	ck_assert_int_eq(app, fd);
	ck_assert_int_eq(ownfd_begin(slot), -1);
	ck_assert(ownfd_lost(slot));
	ownfd_close(slot);
	ck_assert(is_open(app));
	close(app);
}

START_TEST(ownfd_app_close_makes_it_lost)
{
	int p[2];
	int slot = owned_pipe(p);
	ck_assert_int_eq(ownfd_begin(slot), p[0]);
	ownfd_end(slot);

	/* The app closes a range holding it: from then on the agent never uses it. */
	struct ownfd_marks m;
	ownfd_app_closing((unsigned)p[0], (unsigned)p[0] + 10, &m);
	ck_assert_uint_ne(m.mask, 0);
	ck_assert(ownfd_lost(slot));
	close(p[0]);
	app_file_takes_number(slot, p[0]);
	close(p[1]);
}
END_TEST

START_TEST(ownfd_ranges_outside_leave_it)
{
	int p[2];
	int slot = owned_pipe(p);
	struct ownfd_marks m;
	ownfd_app_closing((unsigned)p[0] + 1, ~0u, &m);
	ck_assert_uint_eq(m.mask, 0);
	ownfd_app_closing(0, (unsigned)p[0] - 1, &m);
	ck_assert_uint_eq(m.mask, 0);
	ck_assert(!ownfd_lost(slot));
	ownfd_close(slot);                        /* ours: closed */
	ck_assert(!is_open(p[0]));
	close(p[1]);
}
END_TEST

/* A close no hook saw (the raw syscall) and another file under the number. */
START_TEST(ownfd_raw_close_detected)
{
	int p[2];
	int slot = owned_pipe(p);
	close(p[0]);   /* the test links no hooks: nothing marks it */
	app_file_takes_number(slot, p[0]);
	close(p[1]);
}
END_TEST

/* dup2 onto our descriptor fails: it is ours again, or closed if already forgotten. */
START_TEST(ownfd_close_failed_restores)
{
	int p[2];
	int slot = owned_pipe(p);
	struct ownfd_marks m;
	ownfd_app_closing((unsigned)p[0], (unsigned)p[0], &m);
	ck_assert(ownfd_lost(slot));
	ownfd_app_close_failed(&m);
	ck_assert(!ownfd_lost(slot));
	ck_assert_int_eq(ownfd_begin(slot), p[0]);
	ownfd_end(slot);

	ownfd_app_closing((unsigned)p[0], (unsigned)p[0], &m);
	ownfd_close(slot);            /* the agent noticed and forgot it first */
	ck_assert(is_open(p[0]));
	ownfd_app_close_failed(&m);   /* nobody else can own it: closed, not leaked */
	ck_assert(!is_open(p[0]));
	close(p[1]);
}
END_TEST

START_TEST(ownfd_full)
{
	int p[2], slots[OWNFD_MAX];
	ck_assert_int_eq(pipe(p), 0);
	for (int i = 0; i < OWNFD_MAX; i++) {
		slots[i] = ownfd_add(dup(p[0]));
		ck_assert_int_ge(slots[i], 0);
	}
	ck_assert_int_eq(ownfd_add(p[0]), -1);
	for (int i = 0; i < OWNFD_MAX; i++)
		ownfd_close(slots[i]);
	/* none registered: the app's closes cost one load */
	struct ownfd_marks m;
	ownfd_app_closing(0, ~0u, &m);
	ck_assert_uint_eq(m.mask, 0);
	close(p[0]);
	close(p[1]);
}
END_TEST

/* --- rate-limited warnings --- */

static char errbuf[8192];

/* Runs fn with stderr captured into errbuf; returns the number of lines. */
static int captured_lines(void (*fn)(void))
{
	FILE *tmp = tmpfile();
	int saved = dup(2);
	fflush(stderr);
	dup2(fileno(tmp), 2);
	fn();
	dup2(saved, 2);
	close(saved);
	lseek(fileno(tmp), 0, SEEK_SET);
	ssize_t n = read(fileno(tmp), errbuf, sizeof errbuf - 1);
	errbuf[n > 0 ? n : 0] = '\0';
	fclose(tmp);
	int lines = 0;
	for (const char *p = errbuf; *p; p++)
		lines += *p == '\n';
	return lines;
}

static void same_warning_1000_times(void)
{
	for (int i = 0; i < 1000; i++)
		log_warn("the collector answered HTTP %d", 400);
}

static void ten_different_warnings(void)
{
	for (int i = 0; i < 10; i++)
		log_warn("warning number %d", i);
}

START_TEST(log_repeats_held_back)
{
	log_set_level(LOG_LEVEL_INFO);
	ck_assert_int_eq(captured_lines(same_warning_1000_times), 1);
	ck_assert_ptr_nonnull(strstr(errbuf, "traceagent: warning: the collector answered HTTP 400\n"));
	/* within the same minute, nothing more */
	ck_assert_int_eq(captured_lines(same_warning_1000_times), 0);
}
END_TEST

START_TEST(log_distinct_capped)
{
	log_set_level(LOG_LEVEL_INFO);
	ck_assert_int_eq(captured_lines(ten_different_warnings), LOG_LIMIT_DISTINCT);
}
END_TEST

/* Below the threshold: nothing, and nothing formatted. */
START_TEST(log_threshold_respected)
{
	log_set_level(LOG_LEVEL_ERROR);
	ck_assert_int_eq(captured_lines(ten_different_warnings), 0);
	log_set_level(LOG_LEVEL_INFO);
}
END_TEST

Suite *host_suite(void)
{
	Suite *s = suite_create("host");
	TCase *tc = tcase_create("ownfd");
	tcase_add_test(tc, ownfd_app_close_makes_it_lost);
	tcase_add_test(tc, ownfd_ranges_outside_leave_it);
	tcase_add_test(tc, ownfd_raw_close_detected);
	tcase_add_test(tc, ownfd_close_failed_restores);
	tcase_add_test(tc, ownfd_full);
	suite_add_tcase(s, tc);
	TCase *lg = tcase_create("log");
	tcase_add_test(lg, log_repeats_held_back);
	tcase_add_test(lg, log_distinct_capped);
	tcase_add_test(lg, log_threshold_respected);
	suite_add_tcase(s, lg);
	return s;
}
