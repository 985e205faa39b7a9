-- The mart is built for a window of hours that the caller names (the DAG: the run's data interval).
-- Without --event-time-start/--event-time-end a first microbatch build would run one batch per
-- hour from `begin` until now (tens of thousands): refuse it, with a message that says why.
{% macro require_event_time_window() %}
    {% if execute and flags.WHICH in ('build', 'run') %}
        {% set start = invocation_args_dict.get('event_time_start') %}
        {% set end = invocation_args_dict.get('event_time_end') %}
        {% if not start or not end %}
            {{ exceptions.raise_compiler_error(
                "this project builds the hours you name: pass --event-time-start and "
                ~ "--event-time-end (the run's data interval, UTC)"
            ) }}
        {% endif %}
    {% endif %}
{% endmacro %}
