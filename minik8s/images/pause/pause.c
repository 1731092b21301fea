/*
 * minik8s pause: the process that holds a pod's namespaces open.
 *
 * It sleeps until a signal arrives, exits 0 on SIGTERM/SIGINT (so `docker stop`
 * returns at once instead of waiting for the SIGKILL timeout), and reaps every
 * child that gets re-parented to it (when the pod shares a PID namespace it is
 * PID 1, and orphans would otherwise stay zombies).
 *
 * Built with `gcc -static -Os` so the image is FROM scratch with one file.
 */
#include <signal.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_terminate(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

static int install(int sig, void (*handler)(int), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = handler;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv) {
  static const char version_flag[] = "-v";
  if (argc > 1 && strcmp(argv[1], version_flag) == 0) {
    static const char version[] = "minik8s pause 1\n";
    (void)!write(STDOUT_FILENO, version, sizeof(version) - 1);
    return 0;
  }
  if (install(SIGINT, on_terminate, 0) < 0 || install(SIGTERM, on_terminate, 0) < 0 ||
      install(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART) < 0) {
    return 1;
  }
  for (;;) {
    pause();
  }
  return 0;
}
