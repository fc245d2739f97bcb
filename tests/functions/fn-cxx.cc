// fn-cxx: C++ exceptions thrown through traced functions and caught above them (tests/integration/test-functions.sh).
#include <cstdio>
#include <cstring>
#include <pthread.h>
#include <unistd.h>
#include <stdexcept>

#define NOINLINE __attribute__((noinline, noclone))

volatile int cxx_sink;

NOINLINE int cxx_thrower(int v)
{
	cxx_sink += v;
	if (v > 2)
		throw std::runtime_error("too big");
	return v;
}

NOINLINE int cxx_middle(int v)
{
	int r = cxx_thrower(v);
	cxx_sink += r;
	return r + 1;
}

/* Called by the catcher after it caught: still inside the catcher's call. */
NOINLINE int cxx_after(int v)
{
	cxx_sink += v;
	return v;
}

NOINLINE int cxx_catcher(int v)
{
	try {
		return cxx_middle(v);
	} catch (const std::runtime_error &e) {
		std::printf("caught in catcher: %s\n", e.what());
		return -cxx_after(1);
	}
}

NOINLINE int cxx_rethrower(int v)
{
	try {
		return cxx_middle(v);
	} catch (...) {
		cxx_sink++;
		throw;
	}
}

/* pthread_exit from inside a traced call, or a cancellation at the read it
 * blocks in: glibc unwinds the thread (a forced unwind, run by libgcc without
 * going through our symbols), and the destructors of the frames above must
 * run as without the agent. */
static int idle_pipe[2], ready_pipe[2];
struct guard {
	~guard() { std::printf("guard destroyed\n"); }
};

NOINLINE void cxx_exit_inner(int v)
{
	cxx_sink += v;
	if (v == 1)
		pthread_exit(nullptr);
	char c = 'r';
	if (v == 2 && write(ready_pipe[1], &c, 1) == 1)
		cxx_sink += (int)read(idle_pipe[0], &c, 1);   /* nothing comes: cancelled here */
}

NOINLINE int cxx_exit_outer(int v)
{
	guard g;
	cxx_exit_inner(v);
	return 1;
}

/* nested: while an exception unwinds through traced calls, a destructor
 * throws and catches one of its own; the first must still reach its handler. */
NOINLINE void cxx_quiet_throw(int v)
{
	try {
		if (v >= 0)
			throw v;
	} catch (int c) {
		cxx_sink += c;
	}
}

struct quiet_cleanup {
	~quiet_cleanup() { cxx_quiet_throw(3); }
};

NOINLINE int cxx_nested_inner(int v)
{
	quiet_cleanup c;
	if (v)
		throw std::runtime_error("outer");
	return v;
}

NOINLINE int cxx_nested_outer(int v)
{
	int r = cxx_nested_inner(v);
	cxx_sink += r;
	return r + 1;
}

/* first: a cancellation already pending when the thread makes its first
 * traced call (the agent's first work on the thread must not act on it). */
static volatile int first_go;

NOINLINE int cxx_first_call(int v)
{
	cxx_sink += v;
	return v + 1;
}

static void *first_thread(void *)
{
	guard g;
	while (!first_go)
		;   /* no cancellation point */
	cxx_sink += cxx_first_call(1);
	pthread_testcancel();
	return nullptr;
}

static void *exit_thread(void *arg)
{
	cxx_exit_outer((int)(long)arg);
	std::printf("not reached\n");
	return nullptr;
}

int main(int argc, char **argv)
{
	if (argc > 1 && std::strcmp(argv[1], "exit") == 0) {
		pthread_t t;
		pthread_create(&t, nullptr, exit_thread, (void *)1);
		pthread_join(t, nullptr);
		std::printf("joined\n");
		return 6;
	}
	if (argc > 1 && std::strcmp(argv[1], "nested") == 0) {
		try {
			cxx_nested_outer(1);
		} catch (const std::exception &e) {
			std::printf("caught %s, sink %d\n", e.what(), (int)cxx_sink);
		}
		return 8;
	}
	if (argc > 1 && std::strcmp(argv[1], "first") == 0) {
		pthread_t t;
		void *r;
		pthread_create(&t, nullptr, first_thread, nullptr);
		pthread_cancel(t);
		first_go = 1;
		pthread_join(t, &r);
		std::printf("cancelled %d\n", r == PTHREAD_CANCELED);
		return 9;
	}
	if (argc > 1 && std::strcmp(argv[1], "cancel") == 0) {
		pthread_t t;
		void *r;
		char c;
		if (pipe(idle_pipe) || pipe(ready_pipe) || pthread_create(&t, nullptr, exit_thread, (void *)2) ||
		    read(ready_pipe[0], &c, 1) != 1)
			return 1;
		pthread_cancel(t);
		pthread_join(t, &r);
		std::printf("cancelled %d\n", r == PTHREAD_CANCELED);
		return 7;
	}
	std::printf("ok %d\n", cxx_catcher(1));
	std::printf("thrown %d\n", cxx_catcher(5));
	try {
		cxx_rethrower(9);
	} catch (const std::exception &e) {
		std::printf("caught in main: %s\n", e.what());
	}
	std::printf("after %d\n", cxx_catcher(2));
	return 5;
}
