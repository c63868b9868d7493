/*
** errors.h: the error codes internal C functions return (0 or negative),
** in the manner of libuv's UV_ERRNO_MAP.  Knows nothing about Lua.
*/
#ifndef CFUT_ERRORS_H
#define CFUT_ERRORS_H

#define CFUT_ERRNO_MAP(X) \
  X(ENOMEM,    -1, "not enough memory") \
  X(EBADMSG,   -2, "malformed message") \
  X(ESEND,     -3, "value cannot be sent") \
  X(ESTATE,    -4, "invalid state") \
  X(ESHUTDOWN, -5, "cannot schedule new futures after shutdown") \
  X(EBROKEN,   -6, "executor is broken") \
  X(ETHREAD,   -7, "cannot start a worker thread") \
  X(EDEPTH,    -8, "nesting too deep") \
  X(ETIMEDOUT, -9, "timed out") \
  X(EINTR,    -10, "interrupted!")

enum {
#define CFUT_ERRNO_ENUM(name, val, msg) CFUT_##name = val,
  CFUT_ERRNO_MAP(CFUT_ERRNO_ENUM)
#undef CFUT_ERRNO_ENUM
  CFUT_ELAST
};

const char *cfut_strerror (int code);

#endif
