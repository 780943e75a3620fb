import * as React from 'react';

import { IJob } from '../api';
import { PanelModel } from '../model';
import { JOB_STATUSES, shortId } from '../status';
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
        <span className="hpcbridge-job-when" title={absoluteTime(job.created_at)}>
          {props.when}
        </span>
      </div>
    </li>
  );
});

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
