package org.keycloak.events;

import org.keycloak.events.admin.AdminEvent;
import org.keycloak.provider.Provider;

/** Compile-only declaration of the Keycloak type of the same name (never packaged). */
public interface EventListenerProvider extends Provider {
    void onEvent(Event event);

    void onEvent(AdminEvent event, boolean includeRepresentation);
}
