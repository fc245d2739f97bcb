/* protobuf-c's runtime opened with dlopen on the export thread, so no process pays for loading it at exec. */
#include <dlfcn.h>
#include <pthread.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "agent/log.h"

/*
 * Only linked into libtraceagent.so (the unit tests link -lprotobuf-c).
 * The generated otlp.pb-c.c calls these five functions and points its
 * descriptors at protobuf_c_empty_string; defining them here, hidden, binds
 * those references inside our object, and the real ones are looked up
 * lazily in libprotobuf-c.so.1 the first time the exporter needs them.
 */
const char protobuf_c_empty_string[] = "";

static struct {
	__typeof__(protobuf_c_message_get_packed_size) *get_packed_size;
	__typeof__(protobuf_c_message_pack) *pack;
	__typeof__(protobuf_c_message_pack_to_buffer) *pack_to_buffer;
	__typeof__(protobuf_c_message_unpack) *unpack;
	__typeof__(protobuf_c_message_free_unpacked) *free_unpacked;
} pb;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool loaded;

static void load(void)
{
	void *h = dlopen("libprotobuf-c.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		log_warn("libprotobuf-c (libprotobuf-c.so.1) could not be loaded, spans will not be exported: %s",
			 dlerror());
		return;
	}
	pb.get_packed_size = dlsym(h, "protobuf_c_message_get_packed_size");
	pb.pack = dlsym(h, "protobuf_c_message_pack");
	pb.pack_to_buffer = dlsym(h, "protobuf_c_message_pack_to_buffer");
	pb.unpack = dlsym(h, "protobuf_c_message_unpack");
	pb.free_unpacked = dlsym(h, "protobuf_c_message_free_unpacked");
	loaded = pb.get_packed_size && pb.pack && pb.pack_to_buffer && pb.unpack && pb.free_unpacked;
	if (!loaded)
		log_warn("libprotobuf-c.so.1 lacks expected symbols; spans will not be exported");
}

/* Called by the exporter before it first encodes; false = fail open. */
bool protobuf_dl_load(void)
{
	pthread_once(&once, load);
	return loaded;
}

size_t protobuf_c_message_get_packed_size(const ProtobufCMessage *m)
{
	return protobuf_dl_load() ? pb.get_packed_size(m) : 0;
}

size_t protobuf_c_message_pack(const ProtobufCMessage *m, uint8_t *out)
{
	return protobuf_dl_load() ? pb.pack(m, out) : 0;
}

size_t protobuf_c_message_pack_to_buffer(const ProtobufCMessage *m, ProtobufCBuffer *b)
{
	return protobuf_dl_load() ? pb.pack_to_buffer(m, b) : 0;
}

ProtobufCMessage *protobuf_c_message_unpack(const ProtobufCMessageDescriptor *d, ProtobufCAllocator *a,
					    size_t len, const uint8_t *data)
{
	return protobuf_dl_load() ? pb.unpack(d, a, len, data) : NULL;
}

void protobuf_c_message_free_unpacked(ProtobufCMessage *m, ProtobufCAllocator *a)
{
	if (protobuf_dl_load())
		pb.free_unpacked(m, a);
}
