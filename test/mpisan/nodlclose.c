/*
** nodlclose.c: preloaded by `make asan-mpi` (docs/mpi.md, "Tests") so that
** Open MPI's components stay mapped after MPI_Finalize unloads them, and
** LeakSanitizer can name the library of what they keep (lsan.supp).  It
** changes nothing else: the process is about to exit.
*/
#include <dlfcn.h>

int dlclose (void *handle) {
  (void)handle;
  return 0;
}
