/* Resolves every real_* function once with dlsym(RTLD_NEXT); libpq and librdkafka are looked up elsewhere, lazily. */
#include "real.h"

#include <dlfcn.h>
#include <pthread.h>

struct real_fns real;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void resolve(void)
{
	/* Plain stores, one per pointer: a racing reader sees NULL or the final value. */
#define R(field, name) real.field = dlsym(RTLD_NEXT, name)
	R(accept, "accept");
	R(accept4, "accept4");
	R(connect, "connect");
	R(recv, "recv");
	R(recvfrom, "recvfrom");
	R(recvmsg, "recvmsg");
	R(read, "read");
	R(readv, "readv");
	R(read_chk, "__read_chk");
	R(recv_chk, "__recv_chk");
	R(recvfrom_chk, "__recvfrom_chk");
	R(send, "send");
	R(sendto, "sendto");
	R(sendmsg, "sendmsg");
	R(write, "write");
	R(writev, "writev");
	R(sendfile, "sendfile");
	R(sendfile64, "sendfile64");
	R(close, "close");
	R(shutdown, "shutdown");
#undef R
}

void real_resolve(void)
{
	pthread_once(&once, resolve);
}
