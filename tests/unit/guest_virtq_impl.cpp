// The bare-metal guest's ring driver (guest-images/baremetal/virtq.c, plain
// C that is also valid C++), compiled into the unit tests as C++: one
// compiler and one sanitizer runtime for the whole test binary, whatever C
// compiler the build has.
#include "guest-images/baremetal/virtq.c"
