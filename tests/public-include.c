/*
 * public-include.c - a program built as a user of rx builds it: with the
 * public dependency alone (rx_dep, rx_shared_dep). tests/public-include.sh
 * takes this file's compile command from the build to prove that the
 * public headers compile with it and that reactor/'s do not.
 */
#include <stdio.h>

#include <rx.h>

int main(void) {
  printf("rx %s\n", rx_version_string());
  return 0;
}
