/* execl, execle and execlp for libexecgate_preload.so.
 *
 * These are C variadic functions, which stable Rust cannot define. Each gathers its
 * arguments into an argv array on the stack (as glibc does; no malloc: this runs after fork)
 * and calls the shim's Rust implementation of execve or execvpe. lib.rs exports them under
 * their libc names through naked trampolines. */

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>

extern char **environ;

int execgate_preload_execve(const char *path, char *const argv[], char *const envp[]);
int execgate_preload_execvpe(const char *file, char *const argv[], char *const envp[]);

#define HIDDEN __attribute__((visibility("hidden")))

/* Counts the arguments after `arg` up to and including the terminating NULL. */
#define COUNT_ARGS(arg, argc)                                                                \
    do {                                                                                     \
        va_list ap;                                                                          \
        va_start(ap, arg);                                                                   \
        for (argc = 1; va_arg(ap, const char *) != NULL; argc++) {                           \
            if (argc == INT_MAX) {                                                           \
                va_end(ap);                                                                  \
                errno = E2BIG;                                                               \
                return -1;                                                                   \
            }                                                                                \
        }                                                                                    \
        va_end(ap);                                                                          \
    } while (0)

HIDDEN int execgate_preload_execl(const char *path, const char *arg, ...)
{
    ptrdiff_t argc;
    COUNT_ARGS(arg, argc);
    const char *argv[argc + 1];
    va_list ap;
    va_start(ap, arg);
    argv[0] = arg;
    for (ptrdiff_t i = 1; i <= argc; i++)
        argv[i] = va_arg(ap, const char *);
    va_end(ap);
    return execgate_preload_execve(path, (char *const *)argv, environ);
}

HIDDEN int execgate_preload_execle(const char *path, const char *arg, ...)
{
    ptrdiff_t argc;
    COUNT_ARGS(arg, argc);
    const char *argv[argc + 1];
    va_list ap;
    va_start(ap, arg);
    argv[0] = arg;
    for (ptrdiff_t i = 1; i <= argc; i++)
        argv[i] = va_arg(ap, const char *);
    char *const *envp = va_arg(ap, char *const *);
    va_end(ap);
    return execgate_preload_execve(path, (char *const *)argv, envp);
}

HIDDEN int execgate_preload_execlp(const char *file, const char *arg, ...)
{
    ptrdiff_t argc;
    COUNT_ARGS(arg, argc);
    const char *argv[argc + 1];
    va_list ap;
    va_start(ap, arg);
    argv[0] = arg;
    for (ptrdiff_t i = 1; i <= argc; i++)
        argv[i] = va_arg(ap, const char *);
    va_end(ap);
    return execgate_preload_execvpe(file, (char *const *)argv, environ);
}
