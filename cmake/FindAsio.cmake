# FindAsio: standalone Asio (https://think-async.com), which ships no CMake package.
#
# Sets Asio_FOUND, Asio_VERSION and Asio_INCLUDE_DIR, and defines the imported target Asio::Asio:
# header-only, ASIO_STANDALONE and ASIO_NO_DEPRECATED, linked to Threads::Threads.
# An Asio::Asio target that already exists is left untouched.

include(FindPackageHandleStandardArgs)

find_path(Asio_INCLUDE_DIR NAMES asio.hpp)
mark_as_advanced(Asio_INCLUDE_DIR)

if(Asio_INCLUDE_DIR AND EXISTS "${Asio_INCLUDE_DIR}/asio/version.hpp")
  # "#define ASIO_VERSION 102201 // 1.22.1": major * 100000 + minor * 100 + patch.
  file(STRINGS "${Asio_INCLUDE_DIR}/asio/version.hpp" _asio_version REGEX "^#define ASIO_VERSION [0-9]+")
  string(REGEX MATCH "[0-9]+" _asio_version "${_asio_version}")
  math(EXPR _asio_major "${_asio_version} / 100000")
  math(EXPR _asio_minor "${_asio_version} / 100 % 1000")
  math(EXPR _asio_patch "${_asio_version} % 100")
  set(Asio_VERSION "${_asio_major}.${_asio_minor}.${_asio_patch}")
  unset(_asio_version)
  unset(_asio_major)
  unset(_asio_minor)
  unset(_asio_patch)
endif()

set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads QUIET)

find_package_handle_standard_args(Asio REQUIRED_VARS Asio_INCLUDE_DIR Threads_FOUND VERSION_VAR Asio_VERSION)

if(Asio_FOUND AND NOT TARGET Asio::Asio)
  add_library(Asio::Asio INTERFACE IMPORTED)
  set_target_properties(Asio::Asio PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${Asio_INCLUDE_DIR}"
    INTERFACE_COMPILE_DEFINITIONS "ASIO_STANDALONE;ASIO_NO_DEPRECATED"
    INTERFACE_LINK_LIBRARIES Threads::Threads)
endif()
