/* Hidden stand-ins for the unwinder entry points the Rust standard library references, so
 * that libexecgate_preload.so does not pull libgcc_s.so.1 into every process of the
 * session (mapping it and running its CPUID-probing constructor costs about 30 us per exec
 * on a VM).
 *
 * The shim never unwinds: its hooks are written not to panic, and a panic must not cross
 * the C ABI anyway. With these stand-ins a panic aborts the process at once, and a
 * backtrace is empty. They are hidden: the program's own unwinding (C++ exceptions, a Rust
 * program's panics) keeps using the real libgcc_s. */

#include <stdlib.h>

#define HIDDEN __attribute__((visibility("hidden")))

typedef int reason_code;
enum { URC_END_OF_STACK = 5 };

HIDDEN reason_code _Unwind_RaiseException(void *exception) { (void)exception; abort(); }
HIDDEN void _Unwind_Resume(void *exception) { (void)exception; abort(); }
HIDDEN reason_code _Unwind_Backtrace(void *trace, void *arg)
{
    (void)trace;
    (void)arg;
    return URC_END_OF_STACK;
}
HIDDEN unsigned long _Unwind_GetIP(void *context) { (void)context; return 0; }
HIDDEN unsigned long _Unwind_GetIPInfo(void *context, int *before)
{
    (void)context;
    if (before)
        *before = 0;
    return 0;
}
HIDDEN unsigned long _Unwind_GetDataRelBase(void *context) { (void)context; return 0; }
HIDDEN unsigned long _Unwind_GetTextRelBase(void *context) { (void)context; return 0; }
HIDDEN unsigned long _Unwind_GetRegionStart(void *context) { (void)context; return 0; }
HIDDEN void *_Unwind_GetLanguageSpecificData(void *context) { (void)context; return 0; }
HIDDEN void _Unwind_SetGR(void *context, int index, unsigned long value)
{
    (void)context;
    (void)index;
    (void)value;
    abort();
}
HIDDEN void _Unwind_SetIP(void *context, unsigned long value)
{
    (void)context;
    (void)value;
    abort();
}
