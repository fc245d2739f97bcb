/* fn-lib: a shared object the test program dlopen()s; its functions are traced by @OBJECT specs. */
#define NOINLINE __attribute__((noinline, noclone))

volatile int lib_sink;

NOINLINE int lib_helper(int x)
{
	lib_sink += x;
	return x + 1;
}

NOINLINE int lib_task(int x)
{
	return lib_helper(x) * 2;
}
