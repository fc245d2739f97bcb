/* Patching a function's entry with a jump to its trampoline (x86-64, with capstone loaded at run time); elsewhere every call refuses. */
#ifndef TRACEAGENT_PATCH_H
#define TRACEAGENT_PATCH_H

#include <stdbool.h>
#include <stdint.h>

/* Loads the decoder (libcapstone.so.4). NULL when patching can work here;
 * otherwise why not (another architecture, no capstone), for one warning. */
const char *patch_init(void);

/* Whether the function at addr (size bytes) can be patched: NULL if so,
 * otherwise the reason (a short function, a jump into the bytes the patch
 * replaces, an instruction that cannot be moved). Changes nothing. */
const char *patch_check(uintptr_t addr, uint64_t size);

/*
 * Patches it: the entry jumps to a trampoline that calls entry_stub with r11
 * = desc (the caller's r11 saved just above the return address), then runs
 * the displaced instructions and jumps back into the function. NULL on
 * success, otherwise the reason.
 */
const char *patch_apply(uintptr_t addr, uint64_t size, const void *desc, const void *entry_stub);

#endif
