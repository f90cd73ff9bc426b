package org.keycloak.events;

import org.keycloak.provider.ProviderFactory;

/** Compile-only declaration of the Keycloak type of the same name (never packaged). */
public interface EventListenerProviderFactory extends ProviderFactory<EventListenerProvider> {
}
