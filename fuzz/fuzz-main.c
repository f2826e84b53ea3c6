/*
 * fuzz-main.c - runs fuzz inputs through a target without libFuzzer.
 *
 * Linked with a target's LLVMFuzzerTestOneInput() in gcc builds, so that
 * each corpus under fuzz/corpus/ replays as an ordinary meson test: every
 * argument is a file, or a directory whose regular files are read (not
 * recursively), and each file is one input. Files run in name order so
 * that a failure reproduces the same way every time. A target aborts on a
 * broken invariant, which fails the test; this main only reports how many
 * inputs ran, and fails when an argument names nothing it can read.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional, as in libFuzzer: a target may define it to set itself up. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Reads all of `path` into a fresh buffer; NULL on error (errno set). */
static uint8_t *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = NULL;
  size_t cap = 0, n = 0;

  if (f == NULL)
    return NULL;
  for (;;) {
    if (n == cap) {
      uint8_t *grown;
      cap = cap ? cap * 2 : 4096;
      grown = realloc(buf, cap);
      if (grown == NULL) {
        free(buf);
        fclose(f);
        errno = ENOMEM;
        return NULL;
      }
      buf = grown;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0)
      break;
  }
  if (ferror(f)) {
    free(buf);
    fclose(f);
    errno = EIO;
    return NULL;
  }
  fclose(f);
  *size = n;
  return buf;
}

static int run_file(const char *path) {
  size_t size = 0;
  uint8_t *data = read_file(path, &size);
  if (data == NULL) {
    fprintf(stderr, "fuzz-main: %s: %s\n", path, strerror(errno));
    return -1;
  }
  /* Print before running: if the target aborts, the last line names the
   * input that did it. */
  printf("%s (%zu bytes)\n", path, size);
  fflush(stdout);
  LLVMFuzzerTestOneInput(data, size);
  free(data);
  return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

static int only_files(const struct dirent *d) {
  return d->d_name[0] != '.';
}

/* Runs every regular file in `dir`; returns how many, or -1. */
static long run_dir(const char *dir) {
  struct dirent **names;
  long ran = 0;
  int n = scandir(dir, &names, only_files, by_name);

  if (n < 0) {
    fprintf(stderr, "fuzz-main: %s: %s\n", dir, strerror(errno));
    return -1;
  }
  for (int i = 0; i < n; i++) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
      if (run_file(path) != 0)
        ran = -1;
      else if (ran >= 0)
        ran++;
    }
    free(names[i]);
  }
  free(names);
  return ran;
}

int main(int argc, char **argv) {
  struct timespec t0, t1;
  long total = 0;
  int failed = 0;

  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE-OR-DIR...\n", argv[0]);
    return 2;
  }
  if (LLVMFuzzerInitialize != NULL)
    LLVMFuzzerInitialize(&argc, &argv);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 1; i < argc; i++) {
    struct stat st;
    long n;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "fuzz-main: %s: %s\n", argv[i], strerror(errno));
      failed = 1;
      continue;
    }
    n = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]) == 0;
    if (n < 0)
      failed = 1;
    else
      total += n;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%ld inputs in %.1f ms\n", total,
         (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
             (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
  return failed;
}
