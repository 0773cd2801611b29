#pragma once
// The flavour as a namespace name. Everything asyncdb declares lives in the inline namespace
// asyncdb::ASYNCDB_FLAVOUR, so two parts of one program built on different Asio flavours link two distinct
// asyncdbs instead of two different definitions of one class (the one-definition rule). Users write asyncdb::.
#if defined(ASYNCDB_USE_BOOST_ASIO)
#define ASYNCDB_FLAVOUR boost_asio
#else
#define ASYNCDB_FLAVOUR standalone_asio
#endif
