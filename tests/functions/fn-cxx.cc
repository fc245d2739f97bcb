// fn-cxx: C++ exceptions thrown through traced functions and caught above them (tests/integration/test-functions.sh).
#include <cstdio>
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

NOINLINE int cxx_catcher(int v)
{
	try {
		return cxx_middle(v);
	} catch (const std::runtime_error &e) {
		std::printf("caught in catcher: %s\n", e.what());
		return -1;
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

int main()
{
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
