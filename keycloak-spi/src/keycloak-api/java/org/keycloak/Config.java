package org.keycloak;

import java.util.Set;

/** Compile-only declaration of the Keycloak type of the same name (never packaged). */
public class Config {
    public interface Scope {
        String get(String key);

        String get(String key, String defaultValue);

        String[] getArray(String key);

        Integer getInt(String key);

        Integer getInt(String key, Integer defaultValue);

        Long getLong(String key);

        Long getLong(String key, Long defaultValue);

        Boolean getBoolean(String key);

        Boolean getBoolean(String key, Boolean defaultValue);

        Scope scope(String... scope);

        Set<String> getPropertyNames();
    }
}
