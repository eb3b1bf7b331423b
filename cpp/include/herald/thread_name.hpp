#pragma once
/// Names the calling thread (shown by top -H, perf and gdb). Linux limits names to 15 characters.
#include <pthread.h>

namespace herald::detail {

inline void name_this_thread(const char* name) noexcept { pthread_setname_np(pthread_self(), name); }

}  // namespace herald::detail
