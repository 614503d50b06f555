# Install rules and the exported package nudge::nudge (find_package(nudge CONFIG)).
#
# Included by the top-level CMakeLists.txt when NUDGE_INSTALL is ON.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(NUDGE_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/nudge
    CACHE STRING "Where nudgeConfig.cmake is installed, relative to the prefix")

# INCLUDES DESTINATION puts the include directory on the exported target whatever the
# target's own INSTALL_INTERFACE says (it is empty when GNUInstallDirs was not yet included
# where the target was declared).
install(TARGETS nudge EXPORT nudgeTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/nudge
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp")

install(FILES ${PROJECT_BINARY_DIR}/include/nudge/version.hpp
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/nudge)

install(EXPORT nudgeTargets
  NAMESPACE nudge::
  FILE nudgeTargets.cmake
  DESTINATION ${NUDGE_INSTALL_CMAKEDIR})

configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/nudgeConfig.cmake.in
  ${PROJECT_BINARY_DIR}/nudgeConfig.cmake
  INSTALL_DESTINATION ${NUDGE_INSTALL_CMAKEDIR})
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/nudgeConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/nudgeConfig.cmake
  ${PROJECT_BINARY_DIR}/nudgeConfigVersion.cmake
  DESTINATION ${NUDGE_INSTALL_CMAKEDIR})

# The JSON Schema of rule files, for editors (docs/rules.md, "JSON Schema").
install(FILES ${PROJECT_SOURCE_DIR}/schema/rules.schema.json
  DESTINATION ${CMAKE_INSTALL_DATADIR}/nudge)

# The command-line tool, when it is built.
foreach(cli_target nudge_cli)
  if(TARGET ${cli_target})
    install(TARGETS ${cli_target} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endforeach()
