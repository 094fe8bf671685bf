#pragma once
// <linux/kvm.h> for C++. Debian 12's UAPI headers declare flexible arrays
// through __DECLARE_FLEX_ARRAY, which wraps them in an empty struct; in C++ an
// empty struct has size 1, so sizeof(kvm_cpuid2) and with it the ioctl numbers
// (KVM_GET_SUPPORTED_CPUID, KVM_SET_MSRS, ...) come out wrong. Redefine it as
// a plain trailing array before the KVM header sees it.

#include <linux/stddef.h>

#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[0]

#include <linux/kvm.h>

static_assert(sizeof(kvm_cpuid2) == 8, "kvm_cpuid2 layout must match the kernel's");
static_assert(sizeof(kvm_msrs) == 8, "kvm_msrs layout must match the kernel's");
static_assert(sizeof(kvm_msr_list) == 4, "kvm_msr_list layout must match the kernel's");
static_assert(sizeof(kvm_irq_routing) == 8, "kvm_irq_routing layout must match the kernel's");
