/* fn-app: a plain -O2 PIE program whose named, non-inlined functions the agent traces (tests/integration/test-functions.sh); it contains no tracing code. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone))

volatile int sink_v;
volatile int depth_seen[64];

/* error=neg: a status for an unknown task is a business error. */
NOINLINE int task_apply(int id, int status)
{
	sink_v += status;
	return id < 0 ? -2 : id * 10 + status;
}

NOINLINE int task_count(int n)
{
	sink_v += n;
	return n;
}

/* error=null */
NOINLINE const char *task_lookup(int id)
{
	sink_v++;
	return id > 0 ? "found" : NULL;
}

NOINLINE long metrics_calculate(long a, long b, long c, long d, long e, long f)
{
	sink_v++;
	return a + b * 2 + c * 3 + d * 4 + e * 5 + f * 6;
}

NOINLINE double metrics_average(double x, double y, int n)
{
	sink_v++;
	return (x + y) / n;
}

/* gcc -O2 makes the call in tail_outer a jump (a sibling call). */
NOINLINE int tail_inner(int x)
{
	sink_v += x;
	return x * 3;
}

NOINLINE int tail_outer(int x)
{
	return tail_inner(x + 1);
}

/* The store after the call keeps gcc from turning the recursion into a loop. */
NOINLINE int recurse(int n)
{
	if (n <= 0)
		return 0;
	int r = recurse(n - 1);
	depth_seen[n & 63] = r;
	return r + 1;
}

static jmp_buf jb;

NOINLINE void jump_inner(int v)
{
	sink_v += v;
	longjmp(jb, v);
}

NOINLINE int jump_outer(int v)
{
	jump_inner(v);
	return -1;
}

NOINLINE int in_handler(int sig)
{
	sink_v += sig;
	return sig;
}

static volatile int handled;

static void on_signal(int sig)
{
	handled = in_handler(sig);
}

NOINLINE int signal_outer(int n)
{
	raise(SIGUSR1);
	return n + handled;
}

NOINLINE int fork_work(int n)
{
	fflush(stdout);
	pid_t p = fork();
	if (p == 0) {
		printf("child %d\n", task_count(n));
		fflush(stdout);
		_exit(3);
	}
	int st = 0;
	waitpid(p, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A vfork child runs on its parent's stack and memory: a traced call it
 * makes and never returns from (it execs) is left in the parent's shadow stack. */
NOINLINE void vfork_child(void)
{
	execl("/bin/true", "true", (char *)NULL);
	_exit(127);
}

NOINLINE int vfork_outer(int n)
{
	pid_t p = vfork();
	if (p == 0)
		vfork_child();
	int st = 0;
	waitpid(p, &st, 0);
	return n + task_count(WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* Coroutines on stacks of their own, on one thread: a traced call in each,
 * the first returning while the second is still in flight. */
static ucontext_t co_main, co_a, co_b;

NOINLINE int coro_step(int who)
{
	sink_v += who;
	swapcontext(who == 1 ? &co_a : &co_b, &co_main);
	return who * 100;
}

static void coro_body(int who)
{
	printf("coro %d: %d\n", who, coro_step(who));
}

static int coro_run(void)
{
	static char sa[65536], sb[65536];
	getcontext(&co_a);
	co_a.uc_stack.ss_sp = sa, co_a.uc_stack.ss_size = sizeof sa, co_a.uc_link = &co_main;
	makecontext(&co_a, (void (*)(void))coro_body, 1, 1);
	getcontext(&co_b);
	co_b.uc_stack.ss_sp = sb, co_b.uc_stack.ss_size = sizeof sb, co_b.uc_link = &co_main;
	makecontext(&co_b, (void (*)(void))coro_body, 1, 2);
	swapcontext(&co_main, &co_a);   /* a: into coro_step, back here */
	swapcontext(&co_main, &co_b);   /* b: into coro_step, back here */
	swapcontext(&co_main, &co_a);   /* a's coro_step returns (b's is above it), a ends */
	swapcontext(&co_main, &co_b);   /* b's coro_step returns, b ends */
	return task_count(9);
}

NOINLINE int work_unit(int i)
{
	sink_v += i;
	return i * 2;
}

static void *thread_main(void *arg)
{
	long t = (long)arg, sum = 0;
	for (int i = 0; i < 25; i++)
		sum += work_unit((int)t);
	return (void *)sum;
}

/* cancel: a thread cancelled inside traced calls, at the read it blocks in
 * (deferred) or in a loop (asynchronous). The cleanup handler pushed above
 * them must run, as without the agent. */
static int idle_pipe[2], ready_pipe[2];
static volatile int spin;

NOINLINE int cancel_wait(int async)
{
	char c = 'r';
	write(ready_pipe[1], &c, 1);
	if (async) {
		pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL);
		for (;;)
			spin++;
	}
	return (int)read(idle_pipe[0], &c, 1);   /* nothing comes: cancelled here */
}

NOINLINE int cancel_outer(int async)
{
	int r = cancel_wait(async);
	sink_v += r;
	return r;
}

static void cancel_cleanup(void *what)
{
	printf("cleanup %s\n", (const char *)what);
}

static void *cancel_thread(void *arg)
{
	int async = (int)(long)arg;
	pthread_cleanup_push(cancel_cleanup, async ? "async" : "deferred");
	cancel_outer(async);
	pthread_cleanup_pop(0);
	printf("not reached\n");
	return NULL;
}

static int cancel_run(int async)
{
	pthread_t t;
	void *r;
	char c;
	if (pipe(idle_pipe) || pipe(ready_pipe) || pthread_create(&t, NULL, cancel_thread, (void *)(long)async))
		return 1;
	if (read(ready_pipe[0], &c, 1) != 1)
		return 1;
	pthread_cancel(t);
	pthread_join(t, &r);
	printf("cancel %s: %s\n", async ? "async" : "deferred", r == PTHREAD_CANCELED ? "cancelled" : "returned");
	printf("after %d\n", task_count(2));
	return 3;
}

/* http: one request served; the handler makes one HTTP call of its own to UPSTREAM_PORT. */
NOINLINE int upstream_call(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
		return -1;
	const char req[] = "GET /upstream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
	send(fd, req, sizeof req - 1, 0);
	char buf[4096];
	ssize_t n, total = 0;
	while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
		total += n;
	close(fd);
	return total > 0 ? 0 : -1;
}

NOINLINE int handle_request(int fd, int upstream)
{
	int rc = upstream_call(upstream);
	char body[64];
	int bl = snprintf(body, sizeof body, "upstream %d\n", rc);
	char resp[256];
	int n = snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", bl, body);
	return (int)send(fd, resp, (size_t)n, 0);
}

static int serve_one(int upstream)
{
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof a;
	if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4) || getsockname(ls, (struct sockaddr *)&a, &al))
		return 1;
	printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
	fflush(stdout);
	int fd = accept(ls, NULL, NULL);
	char req[4096];
	ssize_t got = 0, n;
	while (got < (ssize_t)sizeof req - 1 && (n = recv(fd, req + got, sizeof req - 1 - (size_t)got, 0)) > 0) {
		got += n;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	handle_request(fd, upstream);
	close(fd);
	close(ls);
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "basic";
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(mode, "basic")) {
		printf("apply %d %d\n", task_apply(4, 2), task_apply(-1, 5));
		printf("count %d\n", task_count(7));
		const char *l1 = task_lookup(1), *l2 = task_lookup(0);
		printf("lookup %s %s\n", l1, l2 ? l2 : "(null)");
		printf("metrics %ld\n", metrics_calculate(1, 2, 3, 4, 5, 6));
		printf("average %.2f\n", metrics_average(1.5, 2.5, 2));
		printf("tail %d\n", tail_outer(1));
		return 0;
	}
	if (!strcmp(mode, "recurse")) {
		printf("recurse %d\n", recurse(argc > 2 ? atoi(argv[2]) : 5));
		return 0;
	}
	if (!strcmp(mode, "threads")) {
		pthread_t t[8];
		long total = 0;
		for (long i = 0; i < 8; i++)
			pthread_create(&t[i], NULL, thread_main, (void *)i);
		for (int i = 0; i < 8; i++) {
			void *r;
			pthread_join(t[i], &r);
			total += (long)r;
		}
		printf("threads %ld\n", total);
		return 0;
	}
	if (!strcmp(mode, "longjmp")) {
		int v = setjmp(jb);
		if (v == 0)
			jump_outer(7);
		printf("longjmp %d then %d\n", v, task_count(3));
		return 4;
	}
	if (!strcmp(mode, "signal")) {
		signal(SIGUSR1, on_signal);
		printf("signal %d\n", signal_outer(1));
		printf("signal again %d\n", signal_outer(2));
		return 0;
	}
	if (!strcmp(mode, "fork")) {
		printf("fork %d\n", fork_work(5));
		return 0;
	}
	if (!strcmp(mode, "vfork")) {
		printf("vfork %d\n", vfork_outer(2));
		printf("vfork again %d\n", vfork_outer(3));
		return 0;
	}
	if (!strcmp(mode, "coro")) {
		printf("coro done %d\n", coro_run());
		return 0;
	}
	if (!strcmp(mode, "dlopen")) {
		void *h = dlopen(argv[2], RTLD_NOW);
		if (!h)
			return 2;
		int (*fn)(int) = (int (*)(int))dlsym(h, "lib_task");
		int (*helper)(int) = (int (*)(int))dlsym(h, "lib_helper");
		printf("lib %d %d\n", fn(3), helper(4));
		return 0;
	}
	if (!strcmp(mode, "cancel"))
		return cancel_run(argc > 2 && !strcmp(argv[2], "async"));
	if (!strcmp(mode, "http"))
		return serve_one(atoi(argv[2]));
	if (!strcmp(mode, "loop")) {
		long n = atol(argv[2]), s = 0;
		for (long i = 0; i < n; i++)
			s += work_unit((int)i);
		printf("loop %ld\n", s);
		return 0;
	}
	return 1;
}
