/*
 * version.c - the version of the library a program runs with, which can
 * differ from the headers it was compiled with (RX_VERSION_HEX,
 * RX_VERSION_STRING) when it links the shared library.
 */
#include "internal.h"

unsigned rx_version(void) {
  return RX_VERSION_HEX;
}

const char *rx_version_string(void) {
  return RX_VERSION_STRING;
}
