/* Where the per-exec cost of interception goes. Run inside an execgate session with the
 * preload shim loaded (benches/exec_breakdown.sh does that), this program times, in one
 * interleaved loop, fork + exec + wait of /bin/true:
 *
 *   raw      execve by raw system call (the shim does not see it), and an environment
 *            without LD_PRELOAD: the baseline;
 *   load     the same, with LD_PRELOAD in /bin/true's environment: what mapping the shim
 *            into a new process costs;
 *   decide   execve through the shim (one Run round trip to the server), without LD_PRELOAD
 *            for /bin/true: the decision alone;
 *   full     the same with LD_PRELOAD: what every exec of a shim session costs;
 *   hop      exec through a freestanding static program that only execs its argument
 *            (exec_hop.c): the least any wrapper binary costs;
 *   wrapper  exec through execgate's wrapper, which asks the server (Run) and execs
 *            /bin/true: what every exec of a patched-shell session costs;
 *
 * and pingpong: one byte to an echo process and back over a socketpair, the kernel's floor
 * for any round trip between two processes on this machine.
 *
 * Each row prints the median and 25th percentile in microseconds; the exec rows also print
 * the median's difference from `raw`. Usage: exec_breakdown N WRAPPER HOP.
 * C rather than Rust: it needs nothing but libc, and the shim must see its execve calls as
 * a dynamically linked C program's. */

#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum { RAW, LOAD, DECIDE, FULL, HOP, WRAPPER, PINGPONG, ROWS };
static const char *const names[ROWS] = {"raw",  "load",    "decide",  "full",
                                        "hop", "wrapper", "pingpong"};
static char *wrapper_path, *hop_path;

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static char *with_preload[256], *without_preload[256];

static double exec_once(int row) {
    char *argv[] = {"/bin/true", NULL};
    /* As a patched shell execs the wrapper: [wrapper, program, argv0]. */
    char *wrapped[] = {row == HOP ? hop_path : wrapper_path, "/bin/true", "/bin/true", NULL};
    char *hopped[] = {hop_path, "/bin/true", NULL};
    char **env = (row == LOAD || row == FULL) ? with_preload : without_preload;
    double start = now_us();
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        switch (row) {
        case RAW:
        case LOAD:
            syscall(SYS_execve, "/bin/true", argv, env);
            break;
        case HOP:
            syscall(SYS_execve, hop_path, hopped, env);
            break;
        case WRAPPER:
            syscall(SYS_execve, wrapper_path, wrapped, env);
            break;
        default:
            execve("/bin/true", argv, env);
        }
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || status != 0) {
        fprintf(stderr, "exec_breakdown: %s: /bin/true did not exit 0 (status %d)\n",
                names[row], status);
        exit(1);
    }
    return now_us() - start;
}

int main(int argc, char **argv) {
    int n = argc == 4 ? atoi(argv[1]) : 0;
    if (n < 4) {
        fprintf(stderr, "usage: exec_breakdown N WRAPPER HOP (N >= 4)\n");
        return 2;
    }
    wrapper_path = argv[2];
    hop_path = argv[3];
    int with = 0, without = 0, preloaded = 0;
    for (char **e = environ; *e && with < 255; e++) {
        with_preload[with++] = *e;
        if (strncmp(*e, "LD_PRELOAD=", 11) == 0)
            preloaded = 1;
        else
            without_preload[without++] = *e;
    }
    if (!preloaded) {
        fprintf(stderr, "exec_breakdown: LD_PRELOAD is not set: run it in a session with the "
                        "preload shim (benches/shim_breakdown.sh)\n");
        return 2;
    }

    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        perror("socketpair");
        return 1;
    }
    pid_t echo = fork();
    if (echo == 0) {
        char c;
        close(pair[0]);
        while (read(pair[1], &c, 1) == 1 && write(pair[1], &c, 1) == 1) {
        }
        _exit(0);
    }
    close(pair[1]);

    double *t = malloc(sizeof(double) * (size_t)n * ROWS);
    if (!t) {
        perror("malloc");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        for (int row = RAW; row <= WRAPPER; row++)
            t[row * n + i] = exec_once(row);
        char c = 'x';
        double start = now_us();
        if (write(pair[0], &c, 1) != 1 || read(pair[0], &c, 1) != 1) {
            perror("pingpong");
            return 1;
        }
        t[PINGPONG * n + i] = now_us() - start;
    }
    close(pair[0]);
    waitpid(echo, NULL, 0);

    double raw_median = 0;
    printf("per exec, %d interleaved iterations (microseconds)\n", n);
    for (int row = 0; row < ROWS; row++) {
        double *r = t + (size_t)row * n;
        qsort(r, n, sizeof(double), by_value);
        double median = r[n / 2];
        if (row == RAW)
            raw_median = median;
        printf("%-9s median %7.1f  p25 %7.1f", names[row], median, r[n / 4]);
        if (row != RAW && row != PINGPONG)
            printf("  (+%.1f over raw, %.2fx)", median - raw_median, median / raw_median);
        printf("\n");
    }
    return 0;
}
