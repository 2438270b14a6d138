# Links the libraries stagefarm's programs use from their static archives
# rather than their shared objects (Debian's -dev packages ship both).
#
# Why: starting a program maps and relocates every shared object it needs,
# about eight page faults each, and a page fault costs 16-50 us on the virtual
# machines stagefarm runs on. With the shared objects `stagefarm --version`
# needed 85 of them, about 1,070 page faults and 52-72 ms of CPU; every build
# command, worker and coordinator start paid it (docs/BENCHMARKS.md, "Starting
# a program"). libcurl, which alone brings some 25 shared objects, is not
# linked at all: common/net/curl_on_demand.cc loads it when first used.
#
# Kept shared: libc and libstdc++ (the toolchain's), OpenSSL's libcrypto (the
# libcurl loaded on demand uses the shared one too, and one copy is enough),
# Kerberos' GSSAPI (no static archive in Debian), ISA-L (likewise) and libzstd:
# Debian's libzstd.a is built without multithreading (ZSTD_c_nbWorkers has an
# upper bound of 0 in it, 256 in libzstd.so), and a zstd export needs both
# cores.
#
# Include after the find_package and pkg_check_modules calls; it rewrites
# their imported targets, so every target that links them, tests included,
# gets the archives and one consistent copy of each library.

option(STAGEFARM_STATIC_DEPENDENCIES
       "Link Abseil, Cap'n Proto, ZeroMQ, libarchive and the compressors statically" ON)
if(NOT STAGEFARM_STATIC_DEPENDENCIES)
  return()
endif()

# Sets ${var} to the path of the static archive lib${name}.a; fails if absent.
function(stagefarm_find_archive var name)
  unset(${var})  # find_library keeps a variable that is already set
  find_library(${var} NAMES lib${name}.a NO_CACHE REQUIRED)
  set(${var} "${${var}}" PARENT_SCOPE)
endfunction()

# Points the imported target at the archive, for every configuration.
function(stagefarm_link_archive target archive)
  get_target_property(configurations ${target} IMPORTED_CONFIGURATIONS)
  if(configurations)
    foreach(configuration IN LISTS configurations)
      set_target_properties(${target} PROPERTIES
        IMPORTED_LOCATION_${configuration} "${archive}")
      set_property(TARGET ${target} PROPERTY IMPORTED_SONAME_${configuration})
    endforeach()
  endif()
  set_target_properties(${target} PROPERTIES IMPORTED_LOCATION "${archive}")
  set_property(TARGET ${target} PROPERTY IMPORTED_SONAME)
endfunction()

# Archives the others depend on, listed after their users: with static
# archives the linker resolves left to right.
foreach(name IN ITEMS lz4 bz2 z lzma snappy sodium pgm norm protokit bsd md
                      xml2 icuuc icudata nettle acl)
  stagefarm_find_archive(archive_${name} ${name})
endforeach()
# The shared libzstd (see the top), for everything that compresses with zstd.
find_library(archive_zstd NAMES libzstd.so NO_CACHE REQUIRED)
find_library(gssapi_krb5_library NAMES gssapi_krb5 REQUIRED)

# Abseil: one archive per component, named like the shared object.
get_directory_property(imported_targets IMPORTED_TARGETS)
foreach(target IN LISTS imported_targets)
  if(NOT target MATCHES "^absl::")
    continue()
  endif()
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "INTERFACE_LIBRARY")  # header-only components
    continue()
  endif()
  get_target_property(location ${target} IMPORTED_LOCATION_NONE)
  if(NOT location MATCHES "/lib(absl_[a-z0-9_]+)\\.so")
    message(FATAL_ERROR "unexpected location of ${target}: ${location}")
  endif()
  stagefarm_find_archive(archive ${CMAKE_MATCH_1})
  stagefarm_link_archive(${target} "${archive}")
endforeach()

# Cap'n Proto and its kj.
foreach(component IN ITEMS capnp kj)
  stagefarm_find_archive(archive ${component})
  stagefarm_link_archive(CapnProto::${component} "${archive}")
endforeach()

# The compressors, zlib and RocksDB's own dependencies (RocksDB is static
# already; the objects the programs take from it need no gflags, as the link
# without it shows).
stagefarm_link_archive(ZLIB::ZLIB "${archive_z}")
set_target_properties(PkgConfig::ZSTD PROPERTIES INTERFACE_LINK_LIBRARIES "${archive_zstd}")
set_target_properties(RocksDB::rocksdb PROPERTIES INTERFACE_LINK_LIBRARIES
  "${archive_snappy};${archive_lz4};${archive_zstd};${archive_bz2};${archive_z}")

# ZeroMQ, with the transports and mechanisms Debian builds it with.
stagefarm_find_archive(archive_zmq zmq)
set_target_properties(PkgConfig::ZMQ PROPERTIES INTERFACE_LINK_LIBRARIES
  "${archive_zmq};${archive_sodium};${archive_pgm};${archive_norm};${archive_protokit};${gssapi_krb5_library};${archive_bsd};${archive_md};Threads::Threads;rt")
# cppzmq is headers only; its pkg-config file names the shared libzmq.
set_target_properties(PkgConfig::CPPZMQ PROPERTIES INTERFACE_LINK_LIBRARIES PkgConfig::ZMQ)

# libarchive. Its pax writer pulls in every format writer, xar's among them,
# hence libxml2 and ICU.
stagefarm_find_archive(archive_archive archive)
stagefarm_link_archive(LibArchive::LibArchive "${archive_archive}")
set_target_properties(LibArchive::LibArchive PROPERTIES INTERFACE_LINK_LIBRARIES
  "${archive_xml2};${archive_icuuc};${archive_icudata};${archive_nettle};${archive_acl};${archive_lzma};${archive_zstd};${archive_lz4};${archive_bz2};${archive_z};${CMAKE_DL_LIBS};m")
