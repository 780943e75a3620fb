import * as React from 'react';

import { IJob, ISweep } from '../api';
import { PanelModel } from '../model';
import { JOB_STATUSES, shortId } from '../status';
import { countsText } from '../sweep';
import { absoluteTime, relativeTime } from '../time';
import { StatusBadge } from './StatusBadge';
import { Select } from './Select';

interface IRowProps {
  job: IJob;
  selected: boolean;
  /** Relative time text, computed by the parent so unchanged rows skip rendering. */
  when: string;
  appName: string;
  hpcName: string;
  showUser: boolean;
  /** "sweep 1a2b3c4d #3 · 5/12": the sweep a job is an element of. */
  sweepText: string;
  onOpen: (id: string) => void;
}

const JobRow = React.memo(function JobRow(props: IRowProps): JSX.Element {
  const { job } = props;
  const open = () => props.onOpen(job.id);
  return (
    <li
      className={`hpcbridge-job-row${props.selected ? ' hpcbridge-selected' : ''}`}
      data-testid="hpcbridge-job-row"
      data-job-id={job.id}
      data-status={job.status}
      role="button"
      tabIndex={0}
      aria-selected={props.selected}
      onClick={open}
      onKeyDown={e => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          open();
        }
      }}
      title={`Job ${job.id}${job.message ? `\n${job.message}` : ''}`}
    >
      <div className="hpcbridge-job-row-main">
        <span className="hpcbridge-job-app">{props.appName}</span>
        <StatusBadge status={job.status} />
      </div>
      <div className="hpcbridge-job-row-sub">
        <span className="hpcbridge-job-id">{shortId(job.id)}</span>
        <span className="hpcbridge-job-hpc">{props.hpcName}</span>
        {props.showUser && <span className="hpcbridge-job-user">{job.user}</span>}
        {props.sweepText && (
          <span className="hpcbridge-job-sweep" data-testid="hpcbridge-job-sweep">
            {props.sweepText}
          </span>
        )}
        <span className="hpcbridge-job-when" title={absoluteTime(job.created_at)}>
          {props.when}
        </span>
      </div>
    </li>
  );
});

function sweepText(job: IJob, sweeps: { [id: string]: ISweep }): string {
  if (!job.sweep_id) {
    return '';
  }
  const sweep = sweeps[job.sweep_id];
  const index =
    job.sweep_index !== null && job.sweep_index !== undefined ? ` #${job.sweep_index}` : '';
  const done = sweep ? ` · ${sweep.finished}/${sweep.size}` : '';
  return `sweep ${shortId(job.sweep_id)}${index}${done}`;
}

/** The sweeps of the listed jobs: counts by status and a progress bar each. */
function SweepSummary(props: { model: PanelModel }): JSX.Element | null {
  const { model } = props;
  const ids = [...new Set(model.jobs.map(j => j.sweep_id).filter((id): id is string => !!id))];
  const sweeps = ids.map(id => model.sweeps[id]).filter((w): w is ISweep => !!w);
  if (sweeps.length === 0) {
    return null;
  }
  return (
    <ul className="hpcbridge-sweeps" aria-label="Sweeps">
      {sweeps.map(w => (
        <li
          key={w.id}
          className="hpcbridge-sweep"
          data-testid="hpcbridge-sweep-summary"
          data-sweep-id={w.id}
          data-done={w.done ? 'true' : 'false'}
        >
          <div className="hpcbridge-sweep-title">
            <span>
              Sweep {shortId(w.id)} · {model.appName(w.app)} · {w.size} jobs
            </span>
            <span>{Math.round(w.progress * 100)}%</span>
          </div>
          <progress max={1} value={w.progress} />
          <div className="hpcbridge-sweep-counts" data-testid="hpcbridge-sweep-counts">
            {countsText(w.counts, JOB_STATUSES)}
          </div>
          {!w.done && (
            <button
              type="button"
              className="jp-mod-styled jp-mod-warn hpcbridge-sweep-cancel"
              data-testid="hpcbridge-sweep-cancel"
              title="Cancel every element that has not ended"
              onClick={() =>
                void model.api.cancelSweep(w.id).then(
                  () => model.refresh(true),
                  error => console.warn('hpcbridge: cancelling the sweep failed', error)
                )
              }
            >
              Cancel sweep
            </button>
          )}
        </li>
      ))}
    </ul>
  );
}

function FilterSelect(props: {
  label: string;
  value: string;
  options: Array<{ value: string; label: string }>;
  testid: string;
  onChange: (value: string) => void;
}): JSX.Element {
  return (
    <label className="hpcbridge-filter">
      <span>{props.label}</span>
      <Select
        value={props.value}
        data-testid={props.testid}
        onChange={e => props.onChange(e.target.value)}
      >
        <option value="">All</option>
        {props.options.map(o => (
          <option key={o.value} value={o.value}>
            {o.label}
          </option>
        ))}
      </Select>
    </label>
  );
}

export function JobList(props: { model: PanelModel }): JSX.Element {
  const { model } = props;
  const onOpen = React.useCallback(
    (id: string) => model.navigate({ kind: 'detail', jobId: id }),
    [model]
  );
  const f = model.filters;
  const filtered = !!(f.status || f.app || f.hpc);
  const showUser = !!model.me?.admin && model.jobs.some(j => j.user !== model.me?.name);
  return (
    <div className="hpcbridge-list">
      <div className="hpcbridge-filters">
        <FilterSelect
          label="Status"
          value={f.status}
          testid="hpcbridge-filter-status"
          options={JOB_STATUSES.map(s => ({ value: s, label: s }))}
          onChange={status => model.setFilters({ status })}
        />
        <FilterSelect
          label="App"
          value={f.app}
          testid="hpcbridge-filter-app"
          options={model.apps.map(a => ({ value: a.id, label: a.name || a.id }))}
          onChange={app => model.setFilters({ app })}
        />
        <FilterSelect
          label="HPC"
          value={f.hpc}
          testid="hpcbridge-filter-hpc"
          options={model.hpcs.map(h => ({ value: h.id, label: h.name || h.id }))}
          onChange={hpc => model.setFilters({ hpc })}
        />
      </div>
      {!model.loaded && !model.error && <div className="hpcbridge-muted">Loading jobs…</div>}
      <SweepSummary model={model} />
      {model.loaded && model.jobs.length === 0 && !filtered && (
        <div className="hpcbridge-empty" data-testid="hpcbridge-empty">
          <p>No jobs yet</p>
          <button
            className="jp-mod-styled jp-mod-accept"
            data-testid="hpcbridge-empty-new-job"
            onClick={() => model.openSubmit()}
          >
            Submit a job
          </button>
        </div>
      )}
      {model.loaded && model.jobs.length === 0 && filtered && (
        <div className="hpcbridge-empty" data-testid="hpcbridge-empty">
          <p>No jobs match these filters</p>
        </div>
      )}
      <ul className="hpcbridge-job-list" aria-label="HPC jobs">
        {model.jobs.map(job => (
          <JobRow
            key={job.id}
            job={job}
            selected={job.id === model.selectedId}
            when={relativeTime(job.created_at, model.now)}
            appName={model.appName(job.app)}
            hpcName={model.hpcName(job.hpc)}
            showUser={showUser}
            sweepText={sweepText(job, model.sweeps)}
            onOpen={onOpen}
          />
        ))}
      </ul>
      {model.total > model.jobs.length && (
        <div className="hpcbridge-muted">
          Showing the newest {model.jobs.length} of {model.total} jobs
        </div>
      )}
    </div>
  );
}
