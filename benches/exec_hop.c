/* The least an exec through a wrapper binary can cost: a freestanding static program that
 * execs its first argument (argv[1..]) and does nothing else. benches/exec_breakdown.sh
 * builds it with `cc -nostdlib -static -no-pie` and times fork + exec through it against a
 * direct fork + exec, next to execgate's wrapper. x86_64 only. */

#if !defined(__x86_64__)
#error "exec_hop.c is written for x86_64"
#endif

#define SYS_EXECVE 59
#define SYS_EXIT 60

static long syscall3(long n, long a, long b, long c) {
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return ret;
}

/* Called by _start with the initial stack pointer: argc, argv..., NULL, envp..., NULL. */
__attribute__((force_align_arg_pointer, noreturn, used)) void hop_main(long *sp) {
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    if (argc > 1)
        syscall3(SYS_EXECVE, (long)argv[1], (long)(argv + 1), (long)envp);
    syscall3(SYS_EXIT, 127, 0, 0);
    __builtin_unreachable();
}

__asm__(".globl _start\n"
        "_start:\n"
        "  mov %rsp, %rdi\n"
        "  call hop_main\n");
